package eventstoretest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// markingHook marks every event it sees with the marks set last.
type markingHook struct {
	mu    sync.Mutex
	marks string
}

func (h *markingHook) set(marks string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.marks = marks
}

func (*markingHook) Wants([]string) bool { return true }

func (h *markingHook) Before(_ context.Context, _ feed.Unit, _ string, evs []events.Event) ([]events.Event, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.marks == "" {
		return evs, nil
	}
	out := slices.Clone(evs)
	for i := range out {
		out[i].Metadata.Extra = map[string]string{events.AppliedMarksKey: h.marks, "tenant": "t"}
	}
	return out, nil
}

func (*markingHook) After(context.Context, feed.Unit, []events.Envelope) error { return nil }

// testUnmarkedFindsWhatNoHookMarked: a unit's feed.MarkScanner returns,
// in feed order, exactly the events after a token, of the types asked,
// that no hook marked with the mark asked: among the committed events and
// the unit's own appends, whatever other marks they carry.
func testUnmarkedFindsWhatNoHookMarked(t *testing.T, src feed.Source, s events.Store) {
	ctx := t.Context()
	hs, ok := src.(feed.HookedSource)
	require.True(t, ok, "%T does not implement feed.HookedSource", src)
	hook := &markingHook{}
	defer hs.AddAppendHook(hook)()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 31))
	names := []string{"p", "q", "p2", "r"}
	randomMarks := func() string {
		var ms []string
		for _, n := range names {
			if rng.IntN(3) == 0 {
				ms = append(ms, n)
			}
		}
		return strings.Join(ms, " ")
	}
	randomEvent := func(i int) events.Event {
		switch rng.IntN(3) {
		case 0:
			return events.Event{Data: counterBumped{N: i}}
		case 1:
			return events.Event{Data: events.Raw{Type: addressChangedType, SchemaVersion: 2, Payload: []byte(`{"street":"s","city":"c"}`)}}
		default:
			return placed(fmt.Sprint(i), i)
		}
	}
	n := 20 + rng.IntN(30)
	var committed []events.Token
	for i := range n {
		hook.set(randomMarks())
		res := mustAppend(t, s, fmt.Sprintf("order-%d", rng.IntN(5)), events.AnyVersion, randomEvent(i))
		committed = append(committed, res.Token)
	}
	u := begin(t, src)
	for i := range rng.IntN(5) {
		hook.set(randomMarks())
		_, err := u.Append(ctx, fmt.Sprintf("own-%d", rng.IntN(2)), events.AnyVersion, randomEvent(n+i))
		require.NoError(t, err)
	}
	// Stream reads, not ReadAll: the feed holds back what commits behind
	// another test's open transaction, Unmarked does not.
	var all []events.Envelope
	for _, id := range []string{"order-0", "order-1", "order-2", "order-3", "order-4", "own-0", "own-1"} {
		envs, err := u.ReadStream(ctx, id, 1, 0)
		require.NoError(t, err)
		all = append(all, envs...)
	}
	slices.SortFunc(all, func(a, b events.Envelope) int { return a.Token.Compare(b.Token) })

	// A unit's Head is the newest committed event's, its own appends left
	// out (PostgreSQL reads it on the unit's connection).
	head, err := u.Head(ctx)
	require.NoError(t, err)
	require.Equal(t, slices.MaxFunc(committed, events.Token.Compare), head)

	ms, ok := u.(feed.MarkScanner)
	require.True(t, ok, "%T does not implement feed.MarkScanner", u)
	allTypes := []string{orderPlacedType, counterBumpedType, addressChangedType, "no.such_type"}
	for round := range 30 {
		var types []string
		for _, ty := range allTypes {
			if rng.IntN(2) == 0 {
				types = append(types, ty)
			}
		}
		mark := names[rng.IntN(len(names))]
		var after events.Token
		if k := rng.IntN(len(all) + 1); k > 0 {
			after = all[k-1].Token
		}
		limit := rng.IntN(len(all) + 2)
		var want []string
		for _, env := range all {
			if env.Token.After(after) && slices.Contains(types, env.Type) && !feed.Marked(env, mark) {
				want = append(want, env.ID)
			}
		}
		if limit > 0 && len(want) > limit {
			want = want[:limit]
		}
		got, err := ms.Unmarked(ctx, after, types, mark, limit)
		require.NoError(t, err)
		ids := make([]string, len(got))
		for i, env := range got {
			ids[i] = env.ID
			require.False(t, feed.Marked(env, mark))
		}
		require.Equal(t, want, nilIfEmpty(ids), "seed %d round %d: after %s, types %v, mark %q, limit %d", seed, round, after, types, mark, limit)
	}
	// PositionsNow reads as Positions does, and a move after it leaves
	// the unit's commit alone.
	cps := src.Checkpoints()
	l, err := cps.Acquire(ctx, "now", "owner", longTTL)
	require.NoError(t, err)
	require.NoError(t, cps.Advance(ctx, l, committed[0]))
	pos, err := ms.PositionsNow(ctx, "now", "unknown")
	require.NoError(t, err)
	require.Equal(t, []events.Token{committed[0], {}}, pos)
	require.NoError(t, cps.Advance(ctx, l, committed[len(committed)-1]))
	require.NoError(t, u.Commit(ctx), "a position read with PositionsNow moved: the commit goes through")
}

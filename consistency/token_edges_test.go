package consistency_test

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestForgedTokenPastTheStoresRangeIsAhead: a token parses from any 128
// bits, while both stores hold each half of a position in a signed 64-bit
// integer. A read whose model reflects every stored event and whose token
// lies beyond that range (forged, from another system) has nothing left
// to wait for: it must be reported ahead with nothing behind, as a token
// just past the head is, not as a deadline with an unknown count. Targets
// are random, on both stores.
func TestForgedTokenPastTheStoresRangeIsAhead(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	mem, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = mem.Close() })
	db := pgtest.New(t, nil)
	pg, err := pgstore.New(t.Context(), db.Pool, &pgstore.Config{Schema: db.Schema})
	require.NoError(t, err)
	t.Cleanup(func() { _ = pg.Close() })

	for name, s := range map[string]interface {
		events.Store
		consistency.Counter
	}{"memory": mem, "postgres": pg} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, uint64(len(name))))
			ctx := t.Context()
			var head events.Token
			for i := range 1 + rng.IntN(5) {
				res, err := s.Append(ctx, "s-1", events.AnyVersion, events.Event{Data: events.Raw{Type: "thing_happened", Payload: json.RawMessage(`{"i":` + string(rune('0'+i)) + `}`)}})
				require.NoError(t, err)
				head = res.Token
			}
			tr := setup(t, &consistency.TrackerConfig{Counter: s})
			tr.Advance("model", head) // the model reflects every stored event

			beyond := func() uint64 { return math.MaxInt64 + 1 + rng.Uint64N(math.MaxInt64) }
			for range 20 {
				var target events.Token
				switch rng.IntN(3) {
				case 0: // the major half beyond range
					target = events.MakeToken(beyond(), rng.Uint64())
				case 1: // the minor half beyond range, past the head
					target = events.MakeToken(head.Major()+1+rng.Uint64N(1000), beyond())
				default: // the head's major, the minor beyond range
					target = events.MakeToken(head.Major(), beyond())
				}
				require.Error(t, feed.ValidateToken(target), "the target %s is past what a store holds", target)
				parsed, err := events.ParseToken(target.String()) // as a client would send it
				require.NoError(t, err)
				wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
				st, err := tr.Wait(wctx, parsed, "model")
				cancel()
				require.NoError(t, err)
				require.True(t, st.Stale, "target %s", target)
				require.Equal(t, consistency.ReasonAhead, st.Reason, "target %s past every stored event (head %s)", target, head)
				require.Zero(t, st.Behind, "target %s", target)
			}
		})
	}
}

// TestWaitReachedZeroTokenIsReached: the zero token is the position
// before the first event, so every model has reached it, whether the
// tracker knows the model's position or not, with a live deadline or one
// already past; Wait says so, and the gates' WaitReached must agree (a
// custom gate may hand it a zero token). A non-zero token of a model the
// tracker does not know stays behind.
func TestWaitReachedZeroTokenIsReached(t *testing.T) {
	t.Parallel()
	store, err := memstore.New(nil)
	require.NoError(t, err)
	defer store.Close()
	ctx := t.Context()
	res, err := store.Append(ctx, "s-1", events.NoStream, events.Event{Data: events.Raw{Type: "thing_happened", Payload: json.RawMessage(`{}`)}})
	require.NoError(t, err)
	cps := store.Checkpoints()
	l, err := cps.Acquire(ctx, "stored", "runner", time.Hour)
	require.NoError(t, err)
	u, err := cps.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, u.Commit(u.Context(ctx), feed.Move{Lease: l, Position: res.Token}))

	for _, model := range []string{"stored", "never-stored"} {
		for _, expired := range []bool{false, true} {
			tr := setup(t, &consistency.TrackerConfig{Positions: cps})
			wctx, cancel := context.WithTimeout(ctx, time.Second)
			if expired {
				cancel()
				wctx, cancel = context.WithDeadline(ctx, time.Now().Add(-time.Second))
			}
			st, err := tr.Wait(wctx, events.Token{}, model)
			require.NoError(t, err)
			require.False(t, st.Stale, "%s: Wait calls a zero target fresh", model)
			reached, behind, err := tr.WaitReached(wctx, events.Token{}, model)
			require.NoError(t, err)
			require.True(t, reached, "%s (deadline passed: %v): behind %v", model, expired, behind)
			require.Empty(t, behind)
			if model == "never-stored" {
				reached, behind, err = tr.WaitReached(wctx, events.MakeToken(1, 1), model)
				require.NoError(t, err)
				require.False(t, reached, "a model never stored has not reached the first event")
				require.Equal(t, []string{model}, behind)
			}
			cancel()
		}
	}
}

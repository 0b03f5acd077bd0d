package eventstoretest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// badCall is a call of an events.Store method with input every store
// refuses with ErrInvalidEvent.
type badCall struct {
	what string
	call func(ctx context.Context, s events.Store) error
}

// randomBadStreamID returns a stream id events.ValidateStreamID refuses.
func randomBadStreamID(r *rand.Rand) string {
	good := fmt.Sprintf("order-%d", r.IntN(1000))
	at := r.IntN(len(good) + 1)
	var bad string
	switch r.IntN(5) {
	case 0:
		return ""
	case 1:
		return strings.Repeat("x", events.MaxStreamIDLength+1+r.IntN(100))
	case 2: // a C0 or C1 control, DEL, or a line or paragraph separator
		bad = string([]rune{rune(r.IntN(0x20)), 0x7f, rune(0x80 + r.IntN(0x20)), '\u2028', '\u2029'}[r.IntN(5)])
	case 3: // a byte that starts or continues no character here
		bad = string([]byte{byte(0x80 + r.IntN(0x80))})
	default:
		bad = []string{"\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80", "\xe2\x82"}[r.IntN(4)]
	}
	return good[:at] + bad + good[at:]
}

// randomBadCall returns a call with bad input: to an empty, too long or
// otherwise refused stream id, with a negative expected version, with an
// event of the bad-input table, or reading from a negative version.
func randomBadCall(r *rand.Rand) badCall {
	id := randomBadStreamID(r)
	switch r.IntN(6) {
	case 0:
		return badCall{fmt.Sprintf("Append to %q", id), func(ctx context.Context, s events.Store) error {
			_, err := s.Append(ctx, id, events.AnyVersion, placed("o", 1))
			return err
		}}
	case 1:
		n := -1 - r.Int64N(math.MaxInt64)
		return badCall{fmt.Sprintf("Append with Exactly(%d)", n), func(ctx context.Context, s events.Store) error {
			_, err := s.Append(ctx, "order-1", events.Exactly(n), placed("o", 1))
			return err
		}}
	case 2:
		bad := badInputs[r.IntN(len(badInputs))]
		return badCall{"Append of " + bad.name, func(ctx context.Context, s events.Store) error {
			stream := bad.stream
			if stream == "" {
				stream = "bad-1"
			}
			_, err := s.Append(ctx, stream, bad.expected, placed("o", 1), bad.ev)
			return err
		}}
	case 3:
		return badCall{fmt.Sprintf("ReadStream of %q", id), func(ctx context.Context, s events.Store) error {
			_, err := s.ReadStream(ctx, id, 1, 0)
			return err
		}}
	case 4:
		from := -1 - r.Int64N(math.MaxInt64)
		return badCall{fmt.Sprintf("ReadStream from %d", from), func(ctx context.Context, s events.Store) error {
			_, err := s.ReadStream(ctx, "order-1", from, 0)
			return err
		}}
	}
	return badCall{fmt.Sprintf("StreamVersion of %q", id), func(ctx context.Context, s events.Store) error {
		_, err := s.StreamVersion(ctx, id)
		return err
	}}
}

// canceledContext returns a context that is done already.
func canceledContext(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return ctx
}

// testBadInputBeforeCanceledContext: bad input is refused with
// ErrInvalidEvent even when the context is done already, on both stores
// alike (PostgreSQL judges it before any SQL runs, where the context would
// show), and so is a token no store holds, with ErrInvalidToken.
func testBadInputBeforeCanceledContext(t *testing.T, s events.Store) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	ctx := canceledContext(t)
	for range 60 {
		c := randomBadCall(r)
		err := c.call(ctx, s)
		require.ErrorIs(t, err, events.ErrInvalidEvent, "seed %d: %s with a done context", seed, c.what)
		require.NotErrorIs(t, err, context.Canceled, "seed %d: %s", seed, c.what)
	}
	_, err := s.ReadAll(ctx, events.MakeToken(1<<63+r.Uint64N(1<<63), r.Uint64N(1<<63)), 0)
	require.ErrorIs(t, err, events.ErrInvalidToken, "seed %d: ReadAll after a token out of range, with a done context", seed)
	_, err = s.Append(ctx, "order-1", events.AnyVersion, placed("o", 1))
	require.ErrorIs(t, err, context.Canceled, "good input meets the done context")
	requireStoreHolds(t, s, 0)
}

// testUnitBadInputBeforeCanceledContext is testBadInputBeforeCanceledContext
// through a live unit, with and without an append hook wanting the events.
func testUnitBadInputBeforeCanceledContext(t *testing.T, src feed.Source, s events.Store) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	hs, ok := src.(feed.HookedSource)
	require.True(t, ok, "%T does not implement feed.HookedSource", src)
	ctx := canceledContext(t)
	u := begin(t, src)
	for round := range 60 {
		hooked := round%2 == 1
		var remove func()
		if hooked {
			remove = hs.AddAppendHook(passingHook{})
		}
		c := randomBadCall(r)
		err := c.call(ctx, u)
		if hooked {
			// The store's own Append runs a wanted hook in a unit of its own.
			require.ErrorIs(t, c.call(ctx, s), events.ErrInvalidEvent, "seed %d: %s through the store, hooked", seed, c.what)
			remove()
		}
		require.ErrorIs(t, err, events.ErrInvalidEvent, "seed %d: %s through a unit with a done context (hooked %v)", seed, c.what, hooked)
		require.NotErrorIs(t, err, context.Canceled, "seed %d: %s", seed, c.what)
	}
	require.NoError(t, u.Commit(t.Context()), "refused input leaves the unit usable")
	requireStoreHolds(t, s, 0)
}

// testEndedUnitRefusesEveryCall: once a unit has committed or rolled back,
// every call fails with ErrUnitEnded, as events.Unit promises, whatever
// its input (bad input included) and whether or not its context is done:
// its Rows' calls too (Get with any lock, Put, Delete, List, Prefetch,
// DeleteNamespace), through a Rows taken before the end or after it.
func testEndedUnitRefusesEveryCall(t *testing.T, src feed.Source, s events.Store) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	l, err := src.Checkpoints().Acquire(t.Context(), "ended-unit", "owner", time.Hour)
	require.NoError(t, err)
	badToken := events.MakeToken(1<<63+r.Uint64N(1<<63), 1)
	for round := range 8 {
		u := begin(t, src)
		_, err := u.Append(t.Context(), "order-1", events.AnyVersion, placed("o", round))
		require.NoError(t, err)
		// The unit's rows as taken before it ended, and as after.
		rowsBefore := u.Rows()
		require.NoError(t, rowsBefore.Put(t.Context(), "ns", "t", "k", json.RawMessage(`1`), events.Token{}))
		how := "rolled back"
		if r.IntN(2) == 0 {
			how = "committed"
			require.NoError(t, u.Commit(t.Context()))
		} else {
			require.NoError(t, u.Rollback(t.Context()))
		}
		for range 12 {
			ctx := t.Context()
			if r.IntN(2) == 0 {
				ctx = canceledContext(t)
			}
			c := randomBadCall(r)
			require.ErrorIs(t, c.call(ctx, u), events.ErrUnitEnded, "seed %d: %s on a unit that %s", seed, c.what, how)
			// Unit.Rows is the unit's own view: its calls end with it,
			// whatever their arguments and context.
			rc := randomRowsCall(r)
			rw, which := u.Rows(), "taken after"
			if r.IntN(2) == 0 {
				rw, which = rowsBefore, "taken before"
			}
			require.ErrorIs(t, rc.call(ctx, rw), events.ErrUnitEnded, "seed %d: Rows (%s the end).%s on a unit that %s (done context %v)",
				seed, which, rc.what, how, ctx.Err() != nil)
		}
		ctx := canceledContext(t)
		for what, call := range map[string]func(context.Context) error{
			"Append": func(ctx context.Context) error {
				_, err := u.Append(ctx, "order-1", events.AnyVersion, placed("o", 1))
				return err
			},
			"ReadStream": func(ctx context.Context) error {
				_, err := u.ReadStream(ctx, "order-1", 1, 0)
				return err
			},
			"StreamVersion": func(ctx context.Context) error {
				_, err := u.StreamVersion(ctx, "order-1")
				return err
			},
			"ReadAll": func(ctx context.Context) error {
				_, err := u.ReadAll(ctx, events.Token{}, 0)
				return err
			},
			"ReadAll after a token out of range": func(ctx context.Context) error {
				_, err := u.ReadAll(ctx, badToken, 0)
				return err
			},
			"Head": func(ctx context.Context) error {
				_, err := u.Head(ctx)
				return err
			},
			"Positions": func(ctx context.Context) error {
				_, err := u.Positions(ctx, "ended-unit")
				return err
			},
			"Rows().Get": func(ctx context.Context) error {
				_, _, err := u.Rows().Get(ctx, "ns", "t", "k", feed.LockNone)
				return err
			},
			"Rows().Get of an empty key": func(ctx context.Context) error {
				_, _, err := u.Rows().Get(ctx, "ns", "t", "", feed.LockNone)
				return err
			},
			"Rows().Get with an unknown lock": func(ctx context.Context) error {
				_, _, err := u.Rows().Get(ctx, "ns", "t", "k", feed.Lock(7))
				return err
			},
			"Rows().Get with LockUpdate": func(ctx context.Context) error {
				_, _, err := u.Rows().Get(ctx, "ns", "t", "k", feed.LockUpdate)
				return err
			},
			"Rows().Put": func(ctx context.Context) error {
				return u.Rows().Put(ctx, "ns", "t", "k", json.RawMessage(`1`), events.Token{})
			},
			"Rows().Put of a value that is not JSON": func(ctx context.Context) error {
				return u.Rows().Put(ctx, "ns", "t", "k", json.RawMessage(`{`), events.Token{})
			},
			"Rows().Delete": func(ctx context.Context) error { return u.Rows().Delete(ctx, "ns", "t", "k") },
			"Rows().Delete of a key with a C1 control": func(ctx context.Context) error {
				return u.Rows().Delete(ctx, "ns", "t", "k\u0085")
			},
			"Rows().List": func(ctx context.Context) error {
				_, err := u.Rows().List(ctx, "ns", "t", feed.RowQuery{})
				return err
			},
			"Rows().List with a negative limit": func(ctx context.Context) error {
				_, err := u.Rows().List(ctx, "ns", "t", feed.RowQuery{Limit: -1})
				return err
			},
			"Rows().Prefetch of nothing": func(ctx context.Context) error { return u.Rows().Prefetch(ctx, feed.LockNone) },
			"Rows().Prefetch": func(ctx context.Context) error {
				return u.Rows().Prefetch(ctx, feed.LockShare, feed.RowAddress{Namespace: "ns", Table: "t", Key: "k"})
			},
			"Rows().Prefetch of a bad address": func(ctx context.Context) error {
				return u.Rows().Prefetch(ctx, feed.LockNone, feed.RowAddress{Namespace: "ns", Table: "t"})
			},
			"Rows().DeleteNamespace": func(ctx context.Context) error {
				_, err := u.Rows().DeleteNamespace(ctx, "ns", 1000)
				return err
			},
			"Rows().DeleteNamespace with limit 0": func(ctx context.Context) error {
				_, err := u.Rows().DeleteNamespace(ctx, "ns", 0)
				return err
			},
			"Commit": func(ctx context.Context) error { return u.Commit(ctx) },
			"Commit of a move to a token out of range": func(ctx context.Context) error {
				return u.Commit(ctx, feed.Move{Lease: l, Position: badToken})
			},
		} {
			require.ErrorIs(t, call(t.Context()), events.ErrUnitEnded, "seed %d: %s on a unit that %s", seed, what, how)
			require.ErrorIs(t, call(ctx), events.ErrUnitEnded, "seed %d: %s with a done context on a unit that %s", seed, what, how)
		}
	}
	pos, err := src.Checkpoints().Position(t.Context(), "ended-unit")
	require.NoError(t, err)
	require.True(t, pos.IsZero(), "no ended unit moved the checkpoint")
}

// requireEmptyRead checks that a read which found nothing returned an
// empty slice, not nil: both stores answer alike, down to the JSON an API
// encodes it to.
func requireEmptyRead(t *testing.T, got []events.Envelope, err error, what string) {
	t.Helper()
	require.NoError(t, err, what)
	require.NotNil(t, got, "%s: nothing read is an empty slice, not nil", what)
	require.Empty(t, got, what)
	b, err := json.Marshal(got)
	require.NoError(t, err)
	require.JSONEq(t, `[]`, string(b), what)
}

// testEmptyReadsAreEmptySlices: ReadStream of a stream without events, or
// from past its end, and ReadAll with nothing after the token, return
// empty slices on both stores.
func testEmptyReadsAreEmptySlices(t *testing.T, s events.Store) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	ctx := t.Context()
	got, err := s.ReadAll(ctx, events.Token{}, r.IntN(5))
	requireEmptyRead(t, got, err, "ReadAll of an empty store")
	n := 1 + r.IntN(5)
	evs := make([]events.Event, n)
	for i := range evs {
		evs[i] = placed("o", i)
	}
	res := mustAppend(t, s, "order-1", events.NoStream, evs...)
	awaitAll(t, s, n)
	for range 10 {
		missing := fmt.Sprintf("order-%d", 2+r.IntN(1000))
		got, err = s.ReadStream(ctx, missing, r.Int64N(3), r.IntN(3))
		requireEmptyRead(t, got, err, fmt.Sprintf("seed %d: ReadStream of %q, which has no events", seed, missing))
		from := int64(n) + 1 + r.Int64N(1000)
		got, err = s.ReadStream(ctx, "order-1", from, r.IntN(3))
		requireEmptyRead(t, got, err, fmt.Sprintf("seed %d: ReadStream of a stream at version %d from %d", seed, n, from))
	}
	got, err = s.ReadAll(ctx, res.Token, r.IntN(5))
	requireEmptyRead(t, got, err, "ReadAll after the newest event")
}

// testUnitEmptyReadsAreEmptySlices is testEmptyReadsAreEmptySlices
// through a unit, and for ReadFeed's Batch.Events.
func testUnitEmptyReadsAreEmptySlices(t *testing.T, src feed.Source, s events.Store) {
	ctx := t.Context()
	b, err := src.ReadFeed(ctx, events.Token{}, feed.Filter{Categories: []string{"order"}}, 0)
	requireEmptyRead(t, b.Events, err, "ReadFeed of an empty store")
	u := begin(t, src)
	got, err := u.ReadStream(ctx, "order-1", 1, 0)
	requireEmptyRead(t, got, err, "a unit's ReadStream of a stream without events")
	_, err = u.Append(ctx, "order-1", events.NoStream, placed("o", 1))
	require.NoError(t, err)
	got, err = u.ReadStream(ctx, "order-1", 2, 0)
	requireEmptyRead(t, got, err, "a unit's ReadStream from past the end of its own appends")
	got, err = u.ReadStream(ctx, "order-2", 1, 0)
	requireEmptyRead(t, got, err, "a unit's ReadStream of another stream, once the unit has begun")
	require.NoError(t, u.Commit(ctx))
}

package memstore_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/eventstoretest"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/internal/clocktest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// A message given up when its subscription ended (Watermill's
		// universal tests leave some unanswered) rolls its unit back once
		// its holder answers, or after LeaseTTL: on a goroutine that can
		// outlive the last test by up to that long.
		goleak.IgnoreTopFunction("github.com/converge-es/converge/events/feed.(*consumer).abandon.func1"),
	)
}

// fakeClock is a clock tests move by hand.
type fakeClock = clocktest.Clock

// testBundle holds a store's collaborators.
type testBundle struct {
	clock *fakeClock
}

// setup returns a store on a fake clock, closed when the test ends.
func setup(t *testing.T) (*memstore.Store, *testBundle) {
	t.Helper()
	clock := clocktest.New(time.Date(2025, 1, 2, 3, 4, 5, 6789, time.UTC))
	s, err := memstore.New(&memstore.Config{Registry: eventstoretest.Registry(), Clock: clock})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s, &testBundle{clock: clock}
}

// newSuiteStore is what the shared suites run against: the real clock,
// default limits.
func newSuiteStore(t *testing.T) *memstore.Store {
	t.Helper()
	s, err := memstore.New(&memstore.Config{Registry: eventstoretest.Registry()})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

func TestStoreSuite(t *testing.T) {
	t.Parallel()
	eventstoretest.Run(t, func(t *testing.T) events.Store { t.Helper(); return newSuiteStore(t) })
}

func TestLimitsSuite(t *testing.T) {
	t.Parallel()
	eventstoretest.RunLimits(t, func(t *testing.T, lim events.Limits) events.Store {
		t.Helper()
		s, err := memstore.New(&memstore.Config{Registry: eventstoretest.Registry(), Limits: lim})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func TestFeedSuite(t *testing.T) {
	t.Parallel()
	eventstoretest.RunFeed(t, func(t *testing.T) feed.Source { t.Helper(); return newSuiteStore(t) })
}

func TestNewDefaultsAndValidation(t *testing.T) {
	t.Parallel()
	s, err := memstore.New(nil)
	require.NoError(t, err, "a nil config means defaults")
	require.NotNil(t, s.Registry())
	require.NoError(t, s.Close())

	_, err = memstore.New(&memstore.Config{Limits: events.Limits{MaxPayloadBytes: -1}})
	require.ErrorContains(t, err, "Limits.MaxPayloadBytes")
	_, err = memstore.New(&memstore.Config{Limits: events.Limits{MaxEventsPerAppend: -1}})
	require.ErrorContains(t, err, "Limits.MaxEventsPerAppend")
}

func TestCustomLimits(t *testing.T) {
	t.Parallel()
	s, err := memstore.New(&memstore.Config{Limits: events.Limits{MaxPayloadBytes: 10, MaxEventsPerAppend: 2}})
	require.NoError(t, err)
	defer s.Close()
	raw := func(p string) events.Event {
		return events.Event{Data: events.Raw{Type: "t", Payload: json.RawMessage(p)}}
	}
	_, err = s.Append(t.Context(), "s-1", events.AnyVersion, raw(`"12345678"`))
	require.NoError(t, err, "10 bytes is the limit")
	_, err = s.Append(t.Context(), "s-1", events.AnyVersion, raw(`"123456789"`))
	require.ErrorIs(t, err, events.ErrInvalidEvent)
	_, err = s.Append(t.Context(), "s-1", events.AnyVersion, raw(`1`), raw(`2`), raw(`3`))
	require.ErrorIs(t, err, events.ErrInvalidEvent)
}

func TestClose(t *testing.T) {
	t.Parallel()
	s, err := memstore.New(&memstore.Config{Registry: eventstoretest.Registry()})
	require.NoError(t, err)
	ctx := t.Context()
	_, err = s.Append(ctx, "s-1", events.NoStream, events.Event{Data: events.Raw{Type: "t", Payload: json.RawMessage(`{}`)}})
	require.NoError(t, err)
	l, err := s.Checkpoints().Acquire(ctx, "c", "o", time.Minute)
	require.NoError(t, err)
	u, err := s.Checkpoints().Begin(ctx)
	require.NoError(t, err)

	wake := s.Wake()
	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "closing twice is harmless")
	select {
	case <-wake:
	default:
		t.Fatal("Close must wake feed readers")
	}

	_, err = s.Append(ctx, "s-1", events.AnyVersion, events.Event{Data: events.Raw{Type: "t", Payload: json.RawMessage(`{}`)}})
	require.ErrorIs(t, err, events.ErrClosed)
	_, err = s.ReadStream(ctx, "s-1", 1, 0)
	require.ErrorIs(t, err, events.ErrClosed)
	_, err = s.StreamVersion(ctx, "s-1")
	require.ErrorIs(t, err, events.ErrClosed)
	_, err = s.ReadAll(ctx, events.Token{}, 0)
	require.ErrorIs(t, err, events.ErrClosed)
	_, err = s.Head(ctx)
	require.ErrorIs(t, err, events.ErrClosed)
	_, err = s.ReadFeed(ctx, events.Token{}, feed.Filter{}, 0)
	require.ErrorIs(t, err, events.ErrClosed)
	cps := s.Checkpoints()
	_, err = cps.Acquire(ctx, "c", "o", time.Minute)
	require.ErrorIs(t, err, events.ErrClosed)
	require.ErrorIs(t, cps.Renew(ctx, l, time.Minute), events.ErrClosed)
	require.ErrorIs(t, cps.Release(ctx, l), events.ErrClosed)
	_, err = cps.Position(ctx, "c")
	require.ErrorIs(t, err, events.ErrClosed)
	_, err = cps.Begin(ctx)
	require.ErrorIs(t, err, events.ErrClosed)
	require.ErrorIs(t, u.Commit(ctx, feed.Move{Lease: l, Position: events.MakeToken(1, 1)}), events.ErrClosed)
}

func TestTokensAndRecordedAt(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	for i := range 3 {
		b.clock.Advance(time.Second)
		res, err := s.Append(t.Context(), "s-1", events.AnyVersion, events.Event{Data: events.Raw{Type: "t", Payload: json.RawMessage(`{}`)}})
		require.NoError(t, err)
		seq := uint64(i + 1)
		require.Equal(t, events.MakeToken(seq, seq), res.Token, "tokens are MakeToken(seq, seq)")
	}
	got, err := s.ReadStream(t.Context(), "s-1", 1, 0)
	require.NoError(t, err)
	require.Len(t, got, 3)
	want := time.Date(2025, 1, 2, 3, 4, 6, 6000, time.UTC) // truncated to microseconds, like PostgreSQL
	require.Equal(t, want, got[0].RecordedAt)
	require.Equal(t, want.Add(2*time.Second), got[2].RecordedAt)
}

func TestStoredEventsCannotBeMutated(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	payload := json.RawMessage(`{"a":1}`)
	extra := map[string]string{"k": "v"}
	_, err := s.Append(t.Context(), "s-1", events.NoStream, events.Event{
		Data:     events.Raw{Type: "t", Payload: payload},
		Metadata: events.Metadata{Extra: extra},
	})
	require.NoError(t, err)
	payload[2] = 'X'
	extra["k"] = "changed by the writer"

	got, err := s.ReadStream(t.Context(), "s-1", 1, 0)
	require.NoError(t, err)
	got[0].Payload[2] = 'Y'
	got[0].Metadata.Extra["k"] = "changed by a reader"

	again, err := s.ReadAll(t.Context(), events.Token{}, 0)
	require.NoError(t, err)
	require.JSONEq(t, `{"a":1}`, string(again[0].Payload))
	require.Equal(t, map[string]string{"k": "v"}, again[0].Metadata.Extra)
}

func TestLeaseExpiryFollowsTheClock(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	ctx := t.Context()
	cps := s.Checkpoints()
	a, err := cps.Acquire(ctx, "c", "owner-a", time.Minute)
	require.NoError(t, err)
	require.Equal(t, int64(1), a.Generation, "the first owner gets generation 1")

	b.clock.Advance(time.Minute)
	_, err = cps.Acquire(ctx, "c", "owner-b", time.Minute)
	require.ErrorIs(t, err, feed.ErrLeaseHeld, "a lease is live up to and including its end")
	require.ErrorContains(t, err, "owner-a", "the error names the holder")

	require.NoError(t, cps.Renew(ctx, a, time.Minute))
	b.clock.Advance(time.Minute)
	_, err = cps.Acquire(ctx, "c", "owner-b", time.Minute)
	require.ErrorIs(t, err, feed.ErrLeaseHeld, "Renew extended the lease")

	b.clock.Advance(time.Nanosecond)
	lb, err := cps.Acquire(ctx, "c", "owner-b", time.Minute)
	require.NoError(t, err, "the lease expires just after its end")
	require.Equal(t, int64(2), lb.Generation)

	b.clock.Advance(time.Hour)
	require.NoError(t, cps.Renew(ctx, lb, time.Minute), "an expired lease nobody took over still renews")
	require.NoError(t, cps.Release(ctx, a), "releasing a lost lease is a no-op")
	_, err = cps.Acquire(ctx, "c", "owner-a", time.Minute)
	require.ErrorIs(t, err, feed.ErrLeaseHeld)
}

func TestUnitCommitsOnce(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := t.Context()
	cps := s.Checkpoints()
	l, err := cps.Acquire(ctx, "c", "o", time.Minute)
	require.NoError(t, err)
	u, err := cps.Begin(ctx)
	require.NoError(t, err)
	got, ok := events.UnitFromContext(u.Context(ctx))
	require.True(t, ok, "the unit's context carries it")
	require.Same(t, u, got)
	require.NoError(t, u.Commit(ctx, feed.Move{Lease: l, Position: events.MakeToken(1, 1)}))
	require.ErrorIs(t, u.Commit(ctx, feed.Move{Lease: l, Position: events.MakeToken(2, 2)}), events.ErrUnitEnded, "a unit commits once")

	u, err = cps.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, u.Rollback(ctx))
	require.ErrorIs(t, u.Commit(ctx, feed.Move{Lease: l, Position: events.MakeToken(3, 3)}), events.ErrUnitEnded, "no commit after rollback")
	pos, err := cps.Position(ctx, "c")
	require.NoError(t, err)
	require.Equal(t, events.MakeToken(1, 1), pos)
}

func TestWatchCheckpointsCancel(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := t.Context()
	var (
		mu    sync.Mutex
		moves []events.Token
	)
	cancel := s.WatchCheckpoints(func(_ string, pos events.Token) {
		mu.Lock()
		defer mu.Unlock()
		moves = append(moves, pos)
	})
	cps := s.Checkpoints()
	l, err := cps.Acquire(ctx, "c", "o", time.Minute)
	require.NoError(t, err)
	commit := func(pos events.Token) {
		u, err := cps.Begin(ctx)
		require.NoError(t, err)
		require.NoError(t, u.Commit(ctx, feed.Move{Lease: l, Position: pos}))
	}
	commit(events.MakeToken(1, 1))
	cancel()
	cancel() // idempotent
	commit(events.MakeToken(2, 2))

	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []events.Token{events.MakeToken(1, 1)}, moves, "watchers are called synchronously, and not after cancel")
}

func TestAppendHonoursContext(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.ReadAll(ctx, events.Token{}, 0)
	require.ErrorIs(t, err, context.Canceled)
}

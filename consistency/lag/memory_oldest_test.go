package lag_test

import (
	"log/slog"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/internal/clocktest"
)

// TestMemoryTimeLagIsTheOldestUnprocessedEvent: in memory the time lag is
// timed from the first event after the checkpoint, which must then be the
// oldest. An append that waits for an open unit holding its stream used
// to be stamped (RecordedAt) before the wait and take its token after it,
// so events appended to other streams meanwhile came first in the feed
// though younger, and a projection past its SLA was reported healthy.
func TestMemoryTimeLagIsTheOldestUnprocessedEvent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store, clock, first, u := openUnitAfterCheckpoint(t)

	blocked := make(chan events.AppendResult, 1)
	go func() {
		res, err := store.Append(ctx, "s", events.AnyVersion, rawEvent(2)) // waits for u
		if err != nil {
			res = events.AppendResult{}
		}
		blocked <- res
	}()
	awaitGoroutineIn(t, "memstore.(*Store).lockStream", "TestMemoryTimeLagIsTheOldestUnprocessedEvent")
	clock.Advance(10 * time.Second)
	_, err := store.Append(ctx, "b", events.NoStream, rawEvent(3))
	require.NoError(t, err)
	require.NoError(t, u.Rollback(ctx))
	require.NotEmpty(t, (<-blocked).EventIDs, "the waiting append failed")
	clock.Advance(time.Second)

	evs, err := store.ReadAll(ctx, first.Token, 10)
	require.NoError(t, err)
	require.Len(t, evs, 2)
	for i := 1; i < len(evs); i++ {
		require.False(t, evs[i].RecordedAt.Before(evs[i-1].RecordedAt), "feed order is not time order: %+v", evs)
	}
	mon, err := lag.NewMonitor(store, &lag.Config{
		Clock: clock, Logger: slog.New(slog.DiscardHandler),
		Projections: []lag.Target{{Name: "orders", SLA: 5 * time.Second}},
	})
	require.NoError(t, err)
	rs, err := mon.Check(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(2), rs[0].PositionLag)
	require.Equal(t, clock.Now().Sub(evs[0].RecordedAt), rs[0].TimeLag)
}

// awaitGoroutineIn returns once the stack of one goroutine holds fn and
// the test's name (started by that test, blocked in fn), which no channel
// of the code under test reports.
func awaitGoroutineIn(t *testing.T, fn, test string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 1<<20)
	for {
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, fn) && strings.Contains(g, test) {
				return
			}
		}
		require.True(t, time.Now().Before(deadline), "no goroutine of %s reached %s", test, fn)
		runtime.Gosched()
	}
}

// TestMemoryHorizonAgeIsTheOldestOpenUnit: in memory the report's horizon
// age is how long the oldest open unit that appended has held delivery
// back, for random ages, and 0 once it ends.
func TestMemoryHorizonAgeIsTheOldestOpenUnit(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store, clock, _, u := openUnitAfterCheckpoint(t)
	mon, err := lag.NewMonitor(store, &lag.Config{Clock: clock, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	held := time.Duration(1 + rand.Int64N(int64(time.Hour)))
	clock.Advance(held)
	rs, err := mon.Check(ctx)
	require.NoError(t, err)
	require.Equal(t, held, rs[0].HorizonAge)

	require.NoError(t, u.Rollback(ctx))
	rs, err = mon.Check(ctx)
	require.NoError(t, err)
	require.Zero(t, rs[0].HorizonAge)
}

// openUnitAfterCheckpoint returns a memory store on a virtual clock whose
// projection "orders" has applied its first event, and an open unit that
// appended one to stream "s" after it.
func openUnitAfterCheckpoint(t *testing.T) (*memstore.Store, *clocktest.Clock, events.AppendResult, feed.Unit) {
	t.Helper()
	ctx := t.Context()
	clock := clocktest.New(t0)
	store, err := memstore.New(&memstore.Config{Clock: clock})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	first, err := store.Append(ctx, "a", events.NoStream, rawEvent(0))
	require.NoError(t, err)
	commitAt(t, store.Checkpoints(), "orders", first.Token)
	u, err := store.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	_, err = u.Append(u.Context(ctx), "s", events.NoStream, rawEvent(1))
	require.NoError(t, err)
	return store, clock, first, u
}

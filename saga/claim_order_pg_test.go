package saga_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
)

// TestUnitsClaimingIdsInOppositeOrdersDoNotDeadlock: two partitions each
// take a unit of two messages for the ids x and y, which have no
// instance, in opposite orders (each partition's stream correlates to
// both ids). Each message claims its id. Were the claims taken one
// message at a time, each unit would hold its first id and wait for the
// other's: PostgreSQL would abort one unit with a deadlock, and the
// runtime would deliver it again. Taken together, in key order, one unit
// waits for the other instead, and neither fails. Each message is
// ignored once either way.
func TestUnitsClaimingIdsInOppositeOrdersDoNotDeadlock(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, store, b := newPGBare(t, ctx)
	const partitions = 2
	var streams []string
	for i := 0; len(streams) < partitions; i++ {
		s := fmt.Sprintf("pings-%d", i)
		if feed.PartitionOf(s, partitions) == len(streams) {
			streams = append(streams, s)
		}
	}
	// Each stream's pair in one append: they become readable together (an
	// open transaction elsewhere in the database holds back the feed's
	// horizon), so each partition takes them in one unit.
	for i, ids := range [][2]string{{"x", "y"}, {"y", "x"}} {
		_, err := store.Append(ctx, streams[i], events.NoStream,
			events.Event{Data: Ping{OrderID: ids[0], N: i}}, events.Event{Data: Ping{OrderID: ids[1], N: i}})
		require.NoError(t, err)
	}

	var (
		mu     sync.Mutex
		failed []error
		paired = map[string]bool{} // partitions whose unit held both of their messages
		heads  = map[string]chan struct{}{streams[0]: make(chan struct{}), streams[1]: make(chan struct{})}
	)
	other := map[string]string{streams[0]: streams[1], streams[1]: streams[0]}
	handle := func(ctx context.Context, env events.Envelope) error {
		if err := b.engine.Handle(ctx, env); err != nil {
			mu.Lock()
			failed = append(failed, err)
			mu.Unlock()
			return err
		}
		if feed.UnitIndex(ctx) != 0 || len(feed.UnitEvents(ctx)) != 2 {
			return nil
		}
		mu.Lock()
		if !paired[env.StreamID] {
			paired[env.StreamID] = true
			close(heads[env.StreamID])
		}
		mu.Unlock()
		// Both units go on to their second message only once the other
		// has taken its first, or waits on this one's locks (as the fixed
		// engine makes it): the interleaving that deadlocked.
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-heads[other[env.StreamID]]:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
				if n, err := lockWaits(ctx, db); err != nil || n > 0 {
					return err
				}
			}
		}
	}
	proc, err := feed.NewProcessor(store, &feed.ProcessorConfig{
		Name: "claims", Types: b.engine.Types(), Partitions: partitions, PartitionKey: b.engine.PartitionKey(), CommitBatch: 10,
		Logger: slog.New(slog.DiscardHandler),
	}, handle)
	require.NoError(t, err)
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- proc.Run(pctx) }()
	defer func() {
		stop()
		require.ErrorIs(t, <-done, context.Canceled)
	}()

	ignored := func(id string) int {
		tl, err := b.engine.Show(ctx, orders, id)
		if !errors.Is(err, saga.ErrNotFound) { // no instance, only the records
			return -1
		}
		return len(tl.Ignored)
	}
	m := b.engine.Metrics()
	ignoredCount := func() float64 { return testutil.ToFloat64(m.Ignored.WithLabelValues(orders, "no_instance")) }
	// The records are visible at the commit, the metric only once the
	// unit's after-commit hooks have run: wait for both.
	require.Eventually(t, func() bool { return ignored("x") == 2 && ignored("y") == 2 && ignoredCount() >= 4 },
		45*time.Second, 5*time.Millisecond, "the four messages were not all ignored")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, paired, partitions, "each partition took its two messages in one unit (else the test shows nothing)")
	require.Empty(t, failed, "a unit failed")
	require.Equal(t, 4.0, ignoredCount(), "each message was ignored once")
	require.Zero(t, testutil.ToFloat64(m.Duplicates.WithLabelValues(orders)))
}

package saga_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
)

// TestRedeliveryThatLosesTheStartRaceIsCountedAsDuplicate: a start event
// delivered twice at once (a redelivery while the first delivery's unit is
// still open, as after a lost lease) starts the instance once; the second
// delivery waits on the first's claim of the id (PostgreSQL), then finds
// the instance and the handled record and does nothing. That delivery is
// a duplicate, and the package doc says converge_saga_duplicates_total
// counts duplicate deliveries (Metrics.Duplicates: "deliveries that were
// no-ops"), as it does for a redelivery that comes after the commit.
//
// PostgreSQL only: the memory store makes the second unit conflict and run
// again instead of waiting, and the run again takes the path that counts.
// The second delivery is known to be waiting by its lock wait in
// pg_stat_activity, not by a sleep.
func TestRedeliveryThatLosesTheStartRaceIsCountedAsDuplicate(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, store, b := newPGBare(t, ctx)
	env := b.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 7})
	duplicates := func() float64 { return testutil.ToFloat64(b.engine.Metrics().Duplicates.WithLabelValues(orders)) }

	// Hold the unit open: the instance is claimed, not committed.
	release := holdUnit(t, ctx, store, func(ctx context.Context) error { return b.engine.Handle(ctx, env) })
	second := make(chan error, 1)
	go func() {
		second <- drive.Unit(ctx, store, 0, func(ctx context.Context) error { return b.engine.Handle(ctx, env) })
	}()
	// The second delivery waits on the first one's claim of the id.
	require.Eventually(t, func() bool {
		waiting, err := lockWaits(ctx, db)
		return err == nil && waiting == 1
	}, 30*time.Second, 2*time.Millisecond, "the second delivery waits for the first unit's claim")
	require.NoError(t, release())
	require.NoError(t, <-second)

	info, _ := b.state(t, "1")
	require.Equal(t, int64(1), info.Steps, "the start step ran once")
	require.Len(t, b.commandIDs(t)["stock.reserve"], 1, "its command was sent once")
	tl, err := b.engine.Show(ctx, orders, "1")
	require.NoError(t, err)
	require.Equal(t, 1, countKind(tl, saga.KindStarted))

	require.Equal(t, 1.0, duplicates(), "the delivery that lost the race was a no-op: converge_saga_duplicates_total counts it")

	// The same redelivery after the commit is counted: the metric's
	// meaning does not depend on the timing.
	b.deliver(t, env)
	require.Equal(t, 2.0, duplicates(), "a redelivery after the commit is counted")
}

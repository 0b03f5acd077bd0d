package saga_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestCancelDropsTheParkedStepAndItsQueue: an operator cancels an order
// whose gated step is parked (and reported stuck) with a message queued
// behind it. When the read model then catches up, the dropped step never
// runs and sends nothing, the queued message is never applied, the
// instance's timer never fires, later messages are ignored, and the stuck
// gauge goes back down.
func TestCancelDropsTheParkedStepAndItsQueue(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		fx := newFixture(t, mk, setup{gated: true})
		fx.HoldModel(summaryModel)
		fx.When(placed("1", 30), ev("1", StockReserved{OrderID: "1"}))
		fx.ExpectCommands(ReserveStock{OrderID: "1"})
		fx.ExpectParked(orders, "1", summaryModel)
		fx.When(ev("1", Ping{OrderID: "1", N: 7}))
		require.Equal(t, int64(1), fx.Instance(orders, "1").Queued)
		fx.Advance(saga.DefaultStuckAfter + time.Second).ExpectCommands()
		require.True(t, fx.Instance(orders, "1").Stuck)
		stuck := fx.Engine().Metrics().Stuck.WithLabelValues(orders)
		require.Equal(t, 1.0, testutil.ToFloat64(stuck))

		require.NoError(t, fx.Engine().Cancel(ctx, orders, "1", "customer called"))
		in := fx.Instance(orders, "1")
		require.Equal(t, saga.StatusCancelled, in.Status)
		require.Zero(t, in.Queued)
		require.False(t, in.Stuck)
		fx.ExpectNoTimer(orders, "1", "payment")

		fx.ReleaseModel(summaryModel)
		n, err := fx.Engine().RunParked(ctx)
		require.NoError(t, err)
		require.Zero(t, n, "nothing is parked any more")
		require.Equal(t, 0.0, testutil.ToFloat64(stuck), "the stuck gauge follows the cancel")
		fx.ExpectCommands() // no ChargePayment: the dropped step did not run
		require.Empty(t, sagatest.State[orderState](fx, orders, "1").Pings, "the queued message was dropped, not applied")

		fx.Advance(2 * time.Hour).ExpectCommands() // the payment timer was cancelled with the instance
		fx.When(ev("1", PaymentCharged{OrderID: "1"})).ExpectCommands()
		in = fx.Instance(orders, "1")
		require.Equal(t, saga.StatusCancelled, in.Status)
		require.Equal(t, "customer called", in.Reason)
		ks := kinds(fx.History(orders, "1"))
		require.Contains(t, ks, "cancelled")
		require.NotContains(t, ks[indexOf(ks, "cancelled"):], "resumed", "nothing of the instance ran after the cancel")
	})
}

package saga_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
)

// TestStartOnAnEndedIDStartsNothing: instance ids are never reused. A new
// start event (not a redelivery: an event of its own, on another stream)
// for an instance that completed, failed by its own Fail or was cancelled
// starts nothing and runs no step; it is ignored, counted and recorded.
func TestStartOnAnEndedIDStartsNothing(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		fx := newFixture(t, mk, setup{})
		ctx := context.Background()
		fx.Given(placed("done", 1), ev("done", StockReserved{OrderID: "done"}), ev("done", PaymentCharged{OrderID: "done"}))
		fx.Given(placed("failed", 1), ev("failed", PaymentDeclined{OrderID: "failed", Reason: "card expired"}))
		fx.Given(placed("cancelled", 1))
		require.NoError(t, fx.Engine().Cancel(ctx, orders, "cancelled", "customer called"))
		want := map[string]saga.Status{"done": saga.StatusCompleted, "failed": saga.StatusFailed, "cancelled": saga.StatusCancelled}

		for i, id := range []string{"done", "failed", "cancelled"} {
			before := fx.Instance(orders, id)
			require.Equal(t, want[id], before.Status)
			again := placed(id, 99)
			again.Stream = "order-" + id + "-again"
			fx.When(again).ExpectCommands()
			after := fx.Instance(orders, id)
			require.Equal(t, want[id], after.Status, "%s: not started again", id)
			require.Equal(t, before.Steps, after.Steps, "%s: no step ran", id)
			require.Equal(t, before.State, after.State, "%s: state untouched", id)
			require.Empty(t, after.Timers, "%s: no timer scheduled", id)
			h := fx.History(orders, id).History
			require.Equal(t, 1, countKind(fx.History(orders, id), saga.KindStarted), "%s: started once", id)
			last := h[len(h)-1]
			require.Equal(t, saga.KindIgnored, last.Kind, id)
			require.Equal(t, "order.placed", last.EventType, id)
			require.Contains(t, last.Detail, string(want[id]), id)
			require.Equal(t, float64(i+1), testutil.ToFloat64(fx.Engine().Metrics().Ignored.WithLabelValues(orders, "ended")), id)
		}
	})
}

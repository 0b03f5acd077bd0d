package saga_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestOperatorRequestsAreCarriedOutByTheEngine asks for a retry and a
// cancel through an Operator, which knows no definitions: they are
// recorded, visible in Show, carried out by the engine's next parked-step
// pass, and a request the instance can no longer take is dropped with the
// reason in its history.
func TestOperatorRequestsAreCarriedOutByTheEngine(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		handlers := catalog{"stock.reserve": true, "customer.notify": true, "stock.release": true}
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Commands = handlers }})
		ctx := context.Background()
		op, err := saga.NewOperator(&saga.OperatorConfig{Source: fx.Store(), Clock: fx.Clock()})
		require.NoError(t, err)
		fx.Given(placed("1", 30), placed("2", 30), placed("3", 30))
		fx.When(ev("1", StockReserved{OrderID: "1"})).ExpectStatus(orders, "1", saga.StatusFailed)

		require.ErrorIs(t, errOf(op.RequestRetry(ctx, orders, "2")), saga.ErrNotRetryable, "a running instance has nothing to retry")
		require.ErrorIs(t, errOf(op.RequestRetry(ctx, orders, "nope")), saga.ErrNotFound)
		found, err := op.Find(ctx, "1")
		require.NoError(t, err)
		require.Len(t, found, 1)
		require.Equal(t, orders, found[0].Saga)

		handlers["payment.charge"] = true
		require.NoError(t, errOf(op.RequestRetry(ctx, orders, "1")))
		require.NoError(t, errOf(op.RequestCancel(ctx, orders, "2", "customer called")))
		r, ok, err := op.Pending(ctx, orders, "1")
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, saga.OpRetry, r.Op)
		tl, err := op.Show(ctx, orders, "2")
		require.NoError(t, err)
		require.NotNil(t, tl.Request, "show lists the pending request")

		// Instance 3 is cancelled by the Go API before its request runs.
		require.NoError(t, errOf(op.RequestCancel(ctx, orders, "3", "duplicate order")))
		require.NoError(t, fx.Engine().Cancel(ctx, orders, "3", "by the API"))

		n, err := fx.Engine().RunParked(ctx)
		require.NoError(t, err)
		require.Positive(t, n)
		require.NoError(t, fx.Settle())
		fx.ExpectCommands(ChargePayment{OrderID: "1", Amount: 30})
		fx.ExpectStatus(orders, "1", saga.StatusRunning).ExpectStatus(orders, "2", saga.StatusCancelled)
		require.Equal(t, "customer called", fx.Instance(orders, "2").Reason)
		require.Contains(t, kinds(fx.History(orders, "1")), saga.KindRetried)
		for _, id := range []string{"1", "2", "3"} {
			_, ok, err := op.Pending(ctx, orders, id)
			require.NoError(t, err)
			require.False(t, ok, "request of %s was taken", id)
		}
		last := fx.History(orders, "3").History
		require.Equal(t, saga.KindRequestRefused, last[len(last)-1].Kind)
		require.Contains(t, last[len(last)-1].Detail, "cancel request refused")
		require.Equal(t, "by the API", fx.Instance(orders, "3").Reason)
	})
}

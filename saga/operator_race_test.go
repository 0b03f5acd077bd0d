package saga_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestTwoEnginesTakeARequestOnce: two engines (two processes) whose passes
// find the same cancel requests at the same moment carry each out once;
// the engine that comes second finds the request gone, and records no
// refusal (which would make `sagas cancel --wait` report a failure for a
// cancel that was made).
func TestTwoEnginesTakeARequestOnce(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		fx := newFixture(t, mk, setup{})
		op, err := saga.NewOperator(&saga.OperatorConfig{Source: fx.Store(), Clock: fx.Clock()})
		require.NoError(t, err)
		second, err := saga.NewEngine(&saga.EngineConfig{Store: fx.Store(), Sagas: []saga.Definition{orderSaga(false)}, Clock: fx.Clock(), Tracker: fx.Tracker()})
		require.NoError(t, err)
		const n = 12
		for i := range n {
			id := fmt.Sprint("o", i)
			fx.Given(placed(id, 30))
			require.NoError(t, errOf(op.RequestCancel(ctx, orders, id, "twice asked")))
		}
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for _, e := range []*saga.Engine{fx.Engine(), second} {
			wg.Go(func() {
				_, err := e.RunParked(ctx)
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		for i := range n {
			id := fmt.Sprint("o", i)
			fx.ExpectStatus(orders, id, saga.StatusCancelled)
			ks := kinds(fx.History(orders, id))
			require.Equal(t, 1, countOf(ks, saga.KindCancelled), "%s cancelled once: %v", id, ks)
			require.Zero(t, countOf(ks, saga.KindRequestRefused), "%s: a refusal of a request that was carried out: %v", id, ks)
		}
	})
}

func countOf(ks []string, k string) int {
	n := 0
	for _, x := range ks {
		if x == k {
			n++
		}
	}
	return n
}

// TestRequestsDoNotReplaceEachOther: while one operator's request waits
// for an engine, a request of the other kind is refused with
// ErrRequestPending rather than silently replacing it (the first
// operator's `--wait` would report the other's outcome); one of the same
// kind replaces it.
func TestRequestsDoNotReplaceEachOther(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		handlers := catalog{"stock.reserve": true, "customer.notify": true, "stock.release": true}
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Commands = handlers }})
		op, err := saga.NewOperator(&saga.OperatorConfig{Source: fx.Store(), Clock: fx.Clock()})
		require.NoError(t, err)
		fx.Given(placed("1", 30))
		fx.When(ev("1", StockReserved{OrderID: "1"})).ExpectStatus(orders, "1", saga.StatusFailed) // retryable

		require.NoError(t, errOf(op.RequestCancel(ctx, orders, "1", "first")))
		require.ErrorIs(t, errOf(op.RequestRetry(ctx, orders, "1")), saga.ErrRequestPending)
		require.NoError(t, errOf(op.RequestCancel(ctx, orders, "1", "second")), "the same kind replaces it")
		r, ok, err := op.Pending(ctx, orders, "1")
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, saga.OpCancel, r.Op)
		require.Equal(t, "second", r.Reason)

		_, err = fx.Engine().RunParked(ctx)
		require.NoError(t, err)
		fx.ExpectStatus(orders, "1", saga.StatusCancelled)
		require.ErrorIs(t, errOf(op.RequestRetry(ctx, orders, "1")), saga.ErrNotRetryable, "once taken, the instance decides")
	})
}

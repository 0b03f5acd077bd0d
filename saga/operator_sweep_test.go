package saga_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestOperatorRequestsRunAtTheNextSweep checks the promise of
// RequestRetry and RequestCancel: an engine running the saga type carries
// the request out at the latest after SweepInterval. The requests are
// recorded by an Operator (another process: nothing wakes this engine's
// driver) while the driver sleeps; the pass of the next sweep tick carries
// out every one of them, on random instances and requests.
func TestOperatorRequestsRunAtTheNextSweep(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 29))
		ctx := context.Background()
		handlers := catalog{"stock.reserve": true, "customer.notify": true, "stock.release": true}
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Commands = handlers }})
		op, err := saga.NewOperator(&saga.OperatorConfig{Source: fx.Store(), Clock: fx.Clock()})
		require.NoError(t, err)
		want := map[string]saga.Status{}
		n := 2 + rng.IntN(6)
		for i := range n {
			id := fmt.Sprint(i)
			fx.Given(placed(id, 30))
			if rng.IntN(2) == 0 {
				// No handler for payment.charge yet: the step fails.
				fx.When(ev(id, StockReserved{OrderID: id})).ExpectStatus(orders, id, saga.StatusFailed)
			}
		}
		eng := fx.Engine()
		ticks := make(chan time.Time)
		passes := make(chan struct{}, 1)
		saga.SetSweepTicks(eng, ticks)
		saga.SetPassHook(eng, func(bool) { passes <- struct{}{} })
		require.NoError(t, eng.Start(ctx))
		t.Cleanup(func() { require.NoError(t, eng.Stop(ctx)) })
		<-passes // the pass at start

		handlers["payment.charge"] = true
		for i := range n {
			id := fmt.Sprint(i)
			failed := fx.Instance(orders, id).Status == saga.StatusFailed
			switch {
			case failed && rng.IntN(3) > 0:
				require.NoError(t, errOf(op.RequestRetry(ctx, orders, id)))
				want[id] = saga.StatusRunning
			case rng.IntN(2) == 0:
				require.NoError(t, errOf(op.RequestCancel(ctx, orders, id, "by the operator")))
				want[id] = saga.StatusCancelled
			}
		}
		for id := range want {
			_, ok, err := op.Pending(ctx, orders, id)
			require.NoError(t, err)
			require.True(t, ok, "the request of %s waits for the engine", id)
		}
		ticks <- fx.Clock().Now()
		<-passes
		for id, status := range want {
			_, ok, err := op.Pending(ctx, orders, id)
			require.NoError(t, err)
			require.False(t, ok, "the sweep took the request of %s", id)
			require.Equal(t, status, fx.Instance(orders, id).Status, "instance %s", id)
		}
	})
}

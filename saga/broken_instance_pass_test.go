package saga_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestABrokenInstanceDoesNotStallTheParkedStepPass: an instance whose row
// no longer decodes (hand-edited, or written by a build that is gone)
// fails its own work in a parked-step pass, and only its own. The pass
// reports the failure when it ends, after the steps parked behind the
// broken instance have been looked at (marked stuck here), though an
// operator's request for the broken instance fails first in the pass.
func TestABrokenInstanceDoesNotStallTheParkedStepPass(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		// The first id sorts first; its row is broken once both are parked.
		parkTwo := func(ids ...string) *sagatest.Fixture {
			fx := newFixture(t, mk, setup{gated: true})
			fx.HoldModel(summaryModel)
			for _, id := range ids {
				fx.Given(placed(id, 30), ev(id, StockReserved{OrderID: id}))
				fx.ExpectParked(orders, id, summaryModel)
			}
			return fx
		}
		breakRow := func(fx *sagatest.Fixture, id string) {
			u, err := fx.Store().Checkpoints().Begin(ctx)
			require.NoError(t, err)
			require.NoError(t, u.Rows().Put(ctx, "converge.saga", "instances", orders+"/"+id, json.RawMessage(`{"version":"not a number"}`), events.Token{}))
			require.NoError(t, u.Commit(ctx))
		}

		fx := parkTwo("1", "2")
		breakRow(fx, "1")
		fx.Clock().Advance(saga.DefaultStuckAfter + time.Second)
		_, err := fx.Engine().RunParked(ctx)
		require.Error(t, err, "the broken instance's failure is reported")
		require.True(t, fx.Instance(orders, "2").Stuck, "the step parked behind the broken instance was not marked stuck")

		// An operator's request for the broken instance fails too, first
		// in the pass, and only for it.
		fx = parkTwo("3", "4")
		op, err := saga.NewOperator(&saga.OperatorConfig{Source: fx.Store(), Clock: fx.Clock()})
		require.NoError(t, err)
		for _, id := range []string{"3", "4"} {
			require.NoError(t, errOf(op.RequestCancel(ctx, orders, id, "an operator's")))
		}
		breakRow(fx, "3")
		_, err = fx.Engine().RunParked(ctx)
		require.Error(t, err, "the broken instance's failure is reported")
		require.Equal(t, saga.StatusCancelled, fx.Instance(orders, "4").Status, "a request for the broken instance held up the one after it")
	})
}

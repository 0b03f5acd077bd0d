package saga_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// undoSaga reserves stock, registering its release as the compensation,
// and runs its compensations on a payment timeout and on a cancel.
func undoSaga() *saga.Saga[orderState] {
	s := saga.New[orderState]("undo_rv", nil)
	saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
		st.Schedule("payment", time.Minute)
		if err := st.Compensate(ReleaseStock{OrderID: e.OrderID}); err != nil {
			return err
		}
		return st.Send(ReserveStock{OrderID: e.OrderID})
	})
	saga.OnTimeout(s, "payment", func(st *saga.Step[orderState], _ saga.Timeout) error {
		st.RunCompensations()
		st.Fail("payment timed out")
		return nil
	})
	saga.OnCancel(s, func(st *saga.Step[orderState], _ saga.Cancelled) error {
		st.RunCompensations()
		return nil
	})
	return s
}

// TestUnhandledCompensationFailsTheStepThatRegistersIt: with a command
// catalog, a compensation nobody handles fails the step that registers
// it (ErrNoCommandHandler, as a Send of such a command does), with
// nothing of the step kept. Accepted there, it refused every later step
// that runs the compensations: the timeout failed the instance, and no
// cancel (Engine.Cancel, an operator's) could end it.
func TestUnhandledCompensationFailsTheStepThatRegistersIt(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) {
			c.Sagas = []saga.Definition{undoSaga()}
			c.Commands = catalog{"stock.reserve": true}
		}})
		fx.When(placed("1", 30)).ExpectCommands()
		in := fx.Instance("undo_rv", "1")
		require.Equal(t, saga.StatusFailed, in.Status)
		require.Contains(t, in.Reason, "no command handler")
		require.Contains(t, in.Reason, `compensation "stock.release"`)
		require.NotContains(t, kinds(fx.History("undo_rv", "1")), saga.KindCompensation, "nothing of the refused step is kept")
		fx.ExpectNoTimer("undo_rv", "1", "payment")

		// The failed instance can be cancelled: it has nothing to undo.
		require.NoError(t, fx.Engine().Cancel(context.Background(), "undo_rv", "1", "given up"))
		fx.ExpectStatus("undo_rv", "1", saga.StatusCancelled)
	})
}

// TestCancelRefusedForARemovedCompensationHandlerSaysSo: a compensation
// whose handler a redeploy removed after the step that registered it
// refuses the cancel that would send it, with an error that says so
// (ErrNoCommandHandler and the command, not that the step "cannot be
// stored"); once the handler is back, the cancel goes through and sends
// it. An operator's request is dropped with the same reason in the
// instance's history.
func TestCancelRefusedForARemovedCompensationHandlerSaysSo(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		handlers := catalog{"stock.reserve": true, "stock.release": true}
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) {
			c.Sagas = []saga.Definition{undoSaga()}
			c.Commands = handlers
		}})
		ctx := context.Background()
		fx.When(placed("1", 30)).ExpectCommands(ReserveStock{OrderID: "1"})
		fx.ExpectStatus("undo_rv", "1", saga.StatusRunning)

		delete(handlers, "stock.release") // a redeploy without the handler
		err := fx.Engine().Cancel(ctx, "undo_rv", "1", "customer called")
		require.ErrorIs(t, err, saga.ErrNoCommandHandler)
		require.Contains(t, err.Error(), "no command handler handles")
		require.Contains(t, err.Error(), `"stock.release"`)
		require.NotContains(t, err.Error(), "cannot be stored")
		fx.ExpectStatus("undo_rv", "1", saga.StatusRunning)

		op, err := saga.NewOperator(&saga.OperatorConfig{Source: fx.Store(), Clock: fx.Clock()})
		require.NoError(t, err)
		require.NoError(t, errOf(op.RequestCancel(ctx, "undo_rv", "1", "customer called again")))
		_, err = fx.Engine().RunParked(ctx)
		require.NoError(t, err)
		last := fx.History("undo_rv", "1").History
		require.Equal(t, saga.KindRequestRefused, last[len(last)-1].Kind)
		require.Contains(t, last[len(last)-1].Detail, "no command handler handles")
		require.NotContains(t, last[len(last)-1].Detail, "cannot be stored")
		fx.ExpectStatus("undo_rv", "1", saga.StatusRunning)

		handlers["stock.release"] = true
		require.NoError(t, fx.Engine().Cancel(ctx, "undo_rv", "1", "customer called"))
		require.NoError(t, fx.Settle())
		// The commands since the last When: the refused cancels sent nothing.
		fx.ExpectCommands(ReserveStock{OrderID: "1"}, ReleaseStock{OrderID: "1"})
		fx.ExpectStatus("undo_rv", "1", saga.StatusCancelled)
	})
}

package saga_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestOnCancelUndoesWhatTheInstanceDid: a saga with an OnCancel handler,
// cancelled through the Go API or an operator's request, runs it in the
// cancel's unit before ending: its compensations and commands are sent
// with the cancel, and the instance ends cancelled. A handler that fails
// refuses the cancel and changes nothing.
func TestOnCancelUndoesWhatTheInstanceDid(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		undo := saga.New[orderState]("undo", nil)
		saga.StartOn(undo, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
			if err := st.Compensate(ReleaseStock{OrderID: e.OrderID}); err != nil {
				return err
			}
			return st.Send(ReserveStock{OrderID: e.OrderID})
		})
		saga.OnCancel(undo, func(st *saga.Step[orderState], c saga.Cancelled) error {
			st.RunCompensations()
			return st.Send(NotifyCustomer{OrderID: st.ID(), Text: "cancelled: " + c.Reason})
		})
		stubborn := saga.New[orderState]("stubborn", nil)
		saga.StartOn(stubborn, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
		saga.OnCancel(stubborn, func(st *saga.Step[orderState], _ saga.Cancelled) error {
			if err := st.Send(NotifyCustomer{OrderID: st.ID(), Text: "never sent"}); err != nil {
				return err
			}
			return errors.New("cannot undo yet")
		})
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Sagas = []saga.Definition{undo, stubborn} }})
		op, err := saga.NewOperator(&saga.OperatorConfig{Source: fx.Store(), Clock: fx.Clock()})
		require.NoError(t, err)

		fx.When(placed("1", 1)).ExpectCommands(ReserveStock{OrderID: "1"}) // both sagas start; stubborn sends nothing
		require.NoError(t, fx.Engine().Cancel(ctx, "undo", "1", "customer called"))
		require.NoError(t, fx.Settle())
		// The handler's command, then the compensations it ran, newest first.
		fx.ExpectCommands(ReserveStock{OrderID: "1"}, NotifyCustomer{OrderID: "1", Text: "cancelled: customer called"}, ReleaseStock{OrderID: "1"})
		fx.ExpectStatus("undo", "1", saga.StatusCancelled)
		ks := kinds(fx.History("undo", "1"))
		require.Contains(t, ks, saga.KindCompensating)
		require.Equal(t, saga.KindCancelled, ks[len(ks)-1])

		fx.When(placed("2", 1))
		fx.ExpectCommands(ReserveStock{OrderID: "2"})
		require.NoError(t, errOf(op.RequestCancel(ctx, "undo", "2", "by the operator")))
		_, err = fx.Engine().RunParked(ctx)
		require.NoError(t, err)
		require.NoError(t, fx.Settle())
		fx.ExpectCommands(ReserveStock{OrderID: "2"}, NotifyCustomer{OrderID: "2", Text: "cancelled: by the operator"}, ReleaseStock{OrderID: "2"})
		fx.ExpectStatus("undo", "2", saga.StatusCancelled)

		sent := len(fx.Commands())
		err = fx.Engine().Cancel(ctx, "stubborn", "1", "try")
		require.ErrorContains(t, err, "OnCancel handler failed")
		require.ErrorContains(t, err, "cannot undo yet")
		require.NoError(t, fx.Settle())
		require.Len(t, fx.Commands(), sent, "nothing of the refused cancel was sent")
		fx.ExpectStatus("stubborn", "1", saga.StatusRunning)
	})
}

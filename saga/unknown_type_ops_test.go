package saga_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestCancelAndRetryAreRefusedByAnEngineWithoutTheType: another service's
// engine on the same store does not run the saga type, so it can run
// neither the OnCancel handler that undoes what an instance did nor a
// failed step. Its Cancel and Retry are refused and change nothing; the
// Operator's requests, carried out by the engine that runs the type, undo
// and retry as promised.
func TestCancelAndRetryAreRefusedByAnEngineWithoutTheType(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	undo := saga.New[orderState]("undo", nil)
	saga.StartOn(undo, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
		if err := st.Compensate(ReleaseStock{OrderID: e.OrderID}); err != nil {
			return err
		}
		return st.Send(ReserveStock{OrderID: e.OrderID})
	})
	saga.On(undo, byOrder[Ping], func(*saga.Step[orderState], Ping) error {
		return saga.Permanent(errors.New("the warehouse is gone"))
	})
	saga.OnCancel(undo, func(st *saga.Step[orderState], _ saga.Cancelled) error {
		st.RunCompensations()
		return nil
	})
	fx := newFixture(t, nil, setup{config: func(c *sagatest.Config) { c.Sagas = []saga.Definition{undo} }})
	other := saga.New[orderState]("other", nil)
	saga.StartOn(other, byOrder[Ping], func(*saga.Step[orderState], Ping) error { return nil })
	elsewhere, err := saga.NewEngine(&saga.EngineConfig{Store: fx.Store(), Sagas: []saga.Definition{other}, Clock: fx.Clock()})
	require.NoError(t, err)
	op, err := saga.NewOperator(&saga.OperatorConfig{Source: fx.Store(), Clock: fx.Clock()})
	require.NoError(t, err)

	fx.When(placed("1", 1)).ExpectCommands(ReserveStock{OrderID: "1"})
	before := fx.History("undo", "1")
	err = elsewhere.Cancel(ctx, "undo", "1", "by the wrong engine")
	require.ErrorIs(t, err, saga.ErrUnknownSaga)
	require.ErrorContains(t, err, "Operator.RequestCancel")
	require.NoError(t, fx.Settle())
	fx.ExpectCommands(ReserveStock{OrderID: "1"}) // no ReleaseStock
	require.Equal(t, before, fx.History("undo", "1"), "the refused cancel changed nothing")

	require.NoError(t, errOf(op.RequestCancel(ctx, "undo", "1", "by the operator")))
	_, err = elsewhere.RunParked(ctx)
	require.NoError(t, err)
	fx.ExpectStatus("undo", "1", saga.StatusRunning) // left for the engine that runs the type
	_, err = fx.Engine().RunParked(ctx)
	require.NoError(t, err)
	require.NoError(t, fx.Settle())
	fx.ExpectCommands(ReserveStock{OrderID: "1"}, ReleaseStock{OrderID: "1"}).ExpectStatus("undo", "1", saga.StatusCancelled)

	fx.When(placed("2", 1), ev("2", Ping{OrderID: "2"}))
	fx.ExpectStatus("undo", "2", saga.StatusFailed)
	before = fx.History("undo", "2")
	err = elsewhere.Retry(ctx, "undo", "2")
	require.ErrorIs(t, err, saga.ErrUnknownSaga)
	require.ErrorContains(t, err, "Operator.RequestRetry")
	require.Equal(t, before, fx.History("undo", "2"), "the refused retry changed nothing")

	require.NoError(t, fx.Engine().Retry(ctx, "undo", "2"))
	require.NoError(t, fx.Settle())
	tl := fx.History("undo", "2")
	require.Equal(t, saga.StatusFailed, tl.Info.Status, "the step ran again, and failed again")
	require.Equal(t, saga.KindFailed, kinds(tl)[len(kinds(tl))-1])
	require.Contains(t, kinds(tl), saga.KindRetried)
}

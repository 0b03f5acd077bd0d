package sagatest_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

type Refund struct {
	ID string `json:"id"`
}

// TestRejectionsFedToASagaAreNotItsCommands: a command.Rejected the test
// feeds a saga is appended to a command stream, but the saga did not send
// it: ExpectCommands and Commands list only what the engine sent (here the
// refund its compensations send on the rejection, and the command its
// timeout sends).
func TestRejectionsFedToASagaAreNotItsCommands(t *testing.T) {
	t.Parallel()
	s := saga.New[struct{}]("refunds", nil)
	saga.StartOn(s, func(e Placed, _ events.Envelope) string { return e.ID },
		func(st *saga.Step[struct{}], e Placed) error {
			st.Schedule("remind", time.Hour)
			if err := st.Compensate(Refund(e)); err != nil {
				return err
			}
			return st.Send(Ship(e))
		})
	saga.On(s, func(_ command.Rejected, env events.Envelope) string { return env.Metadata.CorrelationID },
		func(st *saga.Step[struct{}], _ command.Rejected) error {
			st.RunCompensations()
			return nil
		})
	saga.OnTimeout(s, "remind", func(st *saga.Step[struct{}], _ saga.Timeout) error {
		return st.Send(Ship{ID: st.ID()})
	})
	reg := shippingRegistry()
	events.Register[Refund](reg, "payment.refund")
	require.NoError(t, command.Register(reg))
	fx := sagatest.New(t, &sagatest.Config{Registry: reg, Sagas: []saga.Definition{s}})

	fx.When(sagatest.Event{Stream: "order-1", Data: Placed{ID: "1"}}).ExpectCommands(Ship{ID: "1"})
	sent := fx.Commands()
	require.Len(t, sent, 1)
	fx.When(sagatest.Event{
		Stream:      command.StreamFor(command.RejectedType, "1"),
		Data:        command.Rejected{CommandID: sent[0].ID, Type: "shipment.request", Reason: "no stock"},
		Correlation: "1", Causation: sent[0].ID,
	})
	fx.ExpectCommands(Refund{ID: "1"})
	require.Len(t, fx.Commands(), 1)
	require.Equal(t, "payment.refund", fx.Commands()[0].Type)
	fx.ExpectStatus("refunds", "1", saga.StatusCompensating)

	fx.Advance(time.Hour).ExpectCommands(Ship{ID: "1"})
}

package sagatest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestSimDeliversCommandsToSagasThatHandleThem: an audit process manager
// reacts to the Ship command itself, as any consumer of the feed can. The
// fixture delivers the command to it, and so does the simulation, beside
// the command's handler (it used to go to the handler alone).
func TestSimDeliversCommandsToSagasThatHandleThem(t *testing.T) {
	audit := func() saga.Definition {
		s := saga.New[struct{}]("ship_audit", nil)
		saga.StartOn(s, func(c Ship, _ events.Envelope) string { return c.ID },
			func(st *saga.Step[struct{}], _ Ship) error { st.Complete(); return nil })
		return s
	}
	// The fixture: the audit saga sees the Ship command shipping() sends.
	f := sagatest.New(t, &sagatest.Config{Registry: shippingRegistry(), Sagas: []saga.Definition{shipping(), audit()}})
	f.When(sagatest.Event{Stream: "order-1", Data: Placed{ID: "1"}})
	f.ExpectStatus("ship_audit", "1", saga.StatusCompleted)

	// The simulation, with a handler for Ship: the audit completes too.
	err := sagatest.SimulateSeed(t.Context(), &sagatest.SimConfig{
		Registry: shippingRegistry(),
		Sagas:    func(saga.Store) []saga.Definition { return []saga.Definition{shipping(), audit()} },
		Commands: func(store saga.Store) []cqrs.CommandHandler {
			return []cqrs.CommandHandler{command.Handle("ship", store, shipments, func(c Ship) string { return "shipment-" + c.ID },
				func(_ context.Context, _ int, c Ship) ([]any, error) { return []any{Shipped(c)}, nil })}
		},
		Events: []sagatest.Event{{Stream: "order-1", Data: Placed{ID: "1"}}},
		Crash:  -1, Duplicate: -1,
		Invariants: []sagatest.Invariant{func(v *sagatest.SimView) error {
			if !v.Final {
				return nil
			}
			list, err := v.Instances("ship_audit")
			if err != nil {
				return err
			}
			if len(list) != 1 || list[0].Status != saga.StatusCompleted {
				return errors.New("the audit saga never took the Ship command the feed holds")
			}
			return nil
		}},
	}, 1)
	require.NoError(t, err)
}

package sagatest_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// A two-step process: an order is placed, the saga asks for a shipment,
// the shipping service confirms it and the saga completes.
type (
	Placed struct {
		ID string `json:"id"`
	}
	Ship struct {
		ID string `json:"id"`
	}
	Shipped struct {
		ID string `json:"id"`
	}
)

func shipping() *saga.Saga[struct{}] {
	s := saga.New[struct{}]("shipping", nil)
	saga.StartOn(s, func(e Placed, _ events.Envelope) string { return e.ID },
		func(st *saga.Step[struct{}], e Placed) error { return st.Send(Ship(e)) })
	saga.On(s, func(e Shipped, _ events.Envelope) string { return e.ID },
		func(st *saga.Step[struct{}], _ Shipped) error { st.Complete(); return nil })
	return s
}

func shippingRegistry() *events.Registry {
	reg := events.NewRegistry()
	events.Register[Placed](reg, "order.placed")
	events.Register[Ship](reg, "shipment.request")
	events.Register[Shipped](reg, "shipment.done")
	return reg
}

var shipments = events.Aggregate[int]{Apply: func(n int, _ any) (int, error) { return n + 1, nil }}

// ExampleSimulateSeed runs the process under adversarial delivery for one
// seed and checks that no shipment is ever requested twice and that every
// order ends completed. In a test, sagatest.Simulate(t, cfg) runs a range
// of seeds as subtests and prints the seed of a failure for -seed.
func ExampleSimulateSeed() {
	cfg := &sagatest.SimConfig{
		Registry: shippingRegistry(),
		Sagas:    func(saga.Store) []saga.Definition { return []saga.Definition{shipping()} },
		Commands: func(store saga.Store) []cqrs.CommandHandler {
			return []cqrs.CommandHandler{command.Handle("ship", store, shipments, func(c Ship) string { return "shipment-" + c.ID },
				func(_ context.Context, _ int, c Ship) ([]any, error) { return []any{Shipped(c)}, nil })}
		},
		Events: []sagatest.Event{
			{Stream: "order-1", Data: Placed{ID: "1"}},
			{Stream: "order-2", Data: Placed{ID: "2"}},
		},
		Invariants: []sagatest.Invariant{func(v *sagatest.SimView) error {
			for _, id := range []string{"1", "2"} {
				if n := len(v.CommandsOf("shipment.request", id)); n > 1 {
					return fmt.Errorf("order %s: %d shipment requests", id, n)
				}
			}
			if !v.Final {
				return nil
			}
			list, err := v.Instances("shipping")
			if err != nil {
				return err
			}
			for _, in := range list {
				if in.Status != saga.StatusCompleted {
					return errors.New("order " + in.ID + " is " + string(in.Status))
				}
			}
			return nil
		}},
	}
	err := sagatest.SimulateSeed(context.Background(), cfg, 7)
	fmt.Println("seed 7:", err)
	// Output: seed 7: <nil>
}

package saga_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/saga"
)

// Order is the state of the package documentation's order workflow.
type Order struct {
	Total int `json:"total"`
}

// fulfilment is the package documentation's definition of the order
// workflow. Its stock-reserved step reads the order_summary read model.
//
//nolint:staticcheck // the documentation's code writes each command as a literal rather than converting the event of the same shape (S1016)
func fulfilment() *saga.Saga[Order] {
	orders := saga.New[Order]("order_fulfilment", nil)
	saga.StartOn(orders, func(e OrderPlaced, _ events.Envelope) string { return e.OrderID },
		func(s *saga.Step[Order], e OrderPlaced) error {
			s.State().Total = e.Total
			s.Schedule("payment", 30*time.Minute)
			if err := s.Compensate(NotifyCustomer{OrderID: e.OrderID, Text: "cancelled"}); err != nil {
				return err
			}
			return s.Send(ReserveStock{OrderID: e.OrderID})
		})
	saga.On(orders, func(e StockReserved, _ events.Envelope) string { return e.OrderID },
		func(s *saga.Step[Order], e StockReserved) error {
			if err := s.Compensate(ReleaseStock{OrderID: e.OrderID}); err != nil {
				return err
			}
			return s.Send(ChargePayment{OrderID: e.OrderID, Amount: s.State().Total})
		}, saga.Reads("order_summary"))
	saga.On(orders, func(e PaymentCharged, _ events.Envelope) string { return e.OrderID },
		func(s *saga.Step[Order], e PaymentCharged) error {
			s.Cancel("payment")
			s.Complete()
			return s.Send(ShipOrder{OrderID: e.OrderID})
		})
	saga.OnTimeout(orders, "payment", func(s *saga.Step[Order], _ saga.Timeout) error {
		s.RunCompensations() // ReleaseStock, then NotifyCustomer
		s.Fail("payment timed out")
		return nil
	})
	return orders
}

// runSagas is the package documentation's wiring of the engine, as shown
// there, then calls use while the engine runs.
//
//nolint:errcheck,ineffassign,staticcheck // the documentation's code, which leaves the error checks between its steps out
func runSagas(ctx context.Context, store saga.Store, orders saga.Definition, tracker *consistency.Tracker,
	commands saga.CommandCatalog, router *message.Router, use func(*saga.Engine) error,
) error {
	engine, err := saga.NewEngine(&saga.EngineConfig{
		Store: store, Sagas: []saga.Definition{orders}, Tracker: tracker, Commands: commands,
	})
	sagas, err := feed.NewProcessor(store, &feed.ProcessorConfig{
		Name: "sagas", Types: engine.Types(), Handles: engine.Handles(),
		Partitions: 8, PartitionKey: engine.PartitionKey(),
		Gate: engine.Gate, Waiter: tracker,
	}, engine.Handle)
	err = sagas.AddHandlers(router) // the router's middleware applies
	err = engine.Start(ctx)         // the timer loop and the parked-step driver
	defer engine.Stop(ctx)
	if err != nil {
		return err
	}
	return use(engine)
}

// The documentation's order workflow, run in memory on one router: the
// saga, its command handlers, and the order_summary read model its gated
// step waits for, which the tracker follows through the store's
// checkpoints.
func Example_fulfilment() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store, err := memstore.New(&memstore.Config{Registry: registry()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer router.Close()

	// The read model: order totals, written in each delivery's unit.
	summary, err := feed.NewProcessor(store, &feed.ProcessorConfig{Name: "order_summary"},
		func(ctx context.Context, env events.Envelope) error {
			eu, _ := events.UnitFromContext(ctx)
			u, ok := eu.(feed.Unit)
			if !ok {
				return errors.New("the delivery carries no unit")
			}
			return applySummary(ctx, u.Rows(), env)
		})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := summary.AddHandlers(router); err != nil {
		fmt.Println(err)
		return
	}
	tracker, err := consistency.NewTracker(&consistency.TrackerConfig{
		Positions: store.Checkpoints(), Watcher: store, PushHealthy: store.PushHealthy,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := tracker.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = tracker.Stop(context.Background()) }()

	// The command handlers: each appends the event the saga waits for.
	shipped := make(chan struct{})
	commands, err := command.NewProcessor(&command.ProcessorConfig{Store: store, Router: router})
	if err != nil {
		fmt.Println(err)
		return
	}
	err = commands.AddHandlers(
		command.Handle("reserve-stock", store, counter, func(c ReserveStock) string { return "stock-" + c.OrderID },
			func(_ context.Context, _ int, c ReserveStock) ([]any, error) {
				return []any{StockReserved(c)}, nil
			}),
		command.Handle("charge-payment", store, counter, func(c ChargePayment) string { return "payment-" + c.OrderID },
			func(_ context.Context, _ int, c ChargePayment) ([]any, error) {
				return []any{PaymentCharged{OrderID: c.OrderID}}, nil
			}),
		command.Handle("ship-order", store, counter, func(c ShipOrder) string { return "shipping-" + c.OrderID },
			func(context.Context, int, ShipOrder) ([]any, error) {
				close(shipped)
				return nil, nil
			}),
		// The compensations' handlers: a compensation of a type nobody
		// handles fails the step that registers it.
		command.Handle("release-stock", store, counter, func(c ReleaseStock) string { return "stock-" + c.OrderID },
			func(context.Context, int, ReleaseStock) ([]any, error) { return nil, nil }),
		command.Handle("notify-customer", store, counter, func(c NotifyCustomer) string { return "customer-" + c.OrderID },
			func(context.Context, int, NotifyCustomer) ([]any, error) { return nil, nil }),
	)
	if err != nil {
		fmt.Println(err)
		return
	}

	err = runSagas(ctx, store, fulfilment(), tracker, commands, router, func(engine *saga.Engine) error {
		go func() { _ = router.Run(ctx) }()
		<-router.Running()
		if _, err := store.Append(ctx, "order-42", events.NoStream, events.Event{Data: OrderPlaced{OrderID: "42", Total: 30}}); err != nil {
			return err
		}
		select {
		case <-shipped:
		case <-time.After(10 * time.Second):
			return errors.New("timed out")
		}
		timeline, err := engine.Show(ctx, "order_fulfilment", "42")
		if err != nil {
			return err
		}
		fmt.Println(timeline.Info.Status, string(timeline.Info.State))
		for _, h := range timeline.History {
			if h.Kind == saga.KindCommandSent || h.Kind == saga.KindCompleted {
				fmt.Println(h.Kind, h.EventType, h.Detail)
			}
		}
		return router.Close()
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output:
	// completed {"total":30}
	// command_sent stock.reserve {"order_id":"42"}
	// command_sent payment.charge {"order_id":"42","amount":30}
	// command_sent order.ship {"order_id":"42"}
	// completed
}

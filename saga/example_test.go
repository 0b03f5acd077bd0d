package saga_test

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/saga"
)

// The order workflow in memory: the saga runs on feed.Processor and its
// command handlers on Watermill's cqrs command processor, on one router
// over the feed.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reg := registry() // OrderPlaced, StockReserved, ..., ReserveStock, ChargePayment, ...
	store, _ := memstore.New(&memstore.Config{Registry: reg})
	defer store.Close()
	router, _ := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})

	// Command handlers: each appends the event the saga waits for.
	shipped := make(chan struct{})
	commands, _ := command.NewProcessor(&command.ProcessorConfig{Store: store, Router: router})
	_ = commands.AddHandlers(
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

	// The saga engine, fed by the feed through the same router.
	engine, err := saga.NewEngine(&saga.EngineConfig{
		Store: store, Sagas: []saga.Definition{orderSaga(false)}, Commands: commands,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	sagas, _ := feed.NewProcessor(store, &feed.ProcessorConfig{
		Name: "sagas", Types: engine.Types(), Handles: engine.Handles(), Partitions: 4, PartitionKey: engine.PartitionKey(),
	}, engine.Handle)
	_ = sagas.AddHandlers(router)
	defer sagas.Close()
	_ = engine.Start(ctx)
	defer func() { _ = engine.Stop(context.Background()) }()
	go func() { _ = router.Run(ctx) }()
	defer router.Close()
	<-router.Running()

	_, _ = store.Append(ctx, "order-42", events.NoStream, events.Event{Data: OrderPlaced{OrderID: "42", Total: 30}})
	select {
	case <-shipped:
	case <-time.After(10 * time.Second):
		fmt.Println("timed out")
		return
	}
	timeline, _ := engine.Show(ctx, "order_fulfilment", "42")
	fmt.Println(timeline.Info.Status, string(timeline.Info.State))
	for _, h := range timeline.History {
		if h.Kind == saga.KindCommandSent || h.Kind == saga.KindCompleted || h.Kind == saga.KindTimerCancelled {
			fmt.Println(h.Kind, h.EventType, h.Detail)
		}
	}
	// Output:
	// completed {"order_id":"42","total":30}
	// command_sent stock.reserve {"order_id":"42"}
	// command_sent payment.charge {"order_id":"42","amount":30}
	// command_sent order.ship {"order_id":"42"}
	// timer_cancelled  payment
	// completed
}

package converge_test

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/projections"
	"github.com/converge-es/converge/saga"
)

// The commands and events of the package doc's fulfilment, beside
// OrderPlaced.
type (
	ReserveStock struct {
		OrderID string `json:"order_id"`
	}
	StockReserved struct {
		OrderID string `json:"order_id"`
	}
	ChargePayment struct {
		OrderID string `json:"order_id"`
		Cents   int    `json:"cents"`
	}
	PaymentCharged struct {
		OrderID string `json:"order_id"`
	}
)

// ExampleNewClient is the package doc's client: a read model of each
// order's status, a fulfilment saga that reserves the stock and then
// charges the payment, and the two command handlers that do it.
func ExampleNewClient() {
	ctx := context.Background()
	reg := events.NewRegistry()
	events.Register[OrderPlaced](reg, "order_placed")
	events.Register[ReserveStock](reg, "reserve_stock")
	events.Register[StockReserved](reg, "stock_reserved")
	events.Register[ChargePayment](reg, "charge_payment")
	events.Register[PaymentCharged](reg, "payment_charged")
	store, err := memstore.New(&memstore.Config{Registry: reg})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	// The read model: each order's status.
	orderSummary := projections.New("order_summary", nil)
	projections.On(orderSummary, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderPlaced) error {
		return tx.Table("orders").Put(ctx, e.OrderID, "placed")
	})
	projections.On(orderSummary, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e StockReserved) error {
		return tx.Table("orders").Put(ctx, e.OrderID, "reserved")
	})
	projections.On(orderSummary, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e PaymentCharged) error {
		return tx.Table("orders").Put(ctx, e.OrderID, "paid")
	})

	// The saga: reserve the stock, then charge the payment.
	type order struct{ Cents int }
	fulfilment := saga.New[order]("fulfilment", nil)
	saga.StartOn(fulfilment, func(e OrderPlaced, _ events.Envelope) string { return e.OrderID },
		func(s *saga.Step[order], e OrderPlaced) error {
			s.State().Cents = e.Cents
			return s.Send(ReserveStock{OrderID: e.OrderID})
		})
	saga.On(fulfilment, func(e StockReserved, _ events.Envelope) string { return e.OrderID },
		func(s *saga.Step[order], e StockReserved) error {
			return s.Send(ChargePayment{OrderID: e.OrderID, Cents: s.State().Cents})
		})
	saga.On(fulfilment, func(e PaymentCharged, _ events.Envelope) string { return e.OrderID },
		func(s *saga.Step[order], _ PaymentCharged) error {
			s.Complete()
			return nil
		})

	// The command handlers, each appending the event the saga waits for.
	count := events.Aggregate[int]{Apply: func(n int, _ any) (int, error) { return n + 1, nil }}
	reserveStock := command.Handle("reserve-stock", store, count, func(c ReserveStock) string { return "stock-" + c.OrderID },
		func(_ context.Context, _ int, c ReserveStock) ([]any, error) {
			return []any{StockReserved(c)}, nil
		})
	chargePayment := command.Handle("charge-payment", store, count, func(c ChargePayment) string { return "payment-" + c.OrderID },
		func(_ context.Context, _ int, c ChargePayment) ([]any, error) {
			return []any{PaymentCharged{OrderID: c.OrderID}}, nil
		})

	run := func() error {
		client, err := converge.NewClient(store, &converge.Config{
			Projections: []*projections.Projection{orderSummary},
			Sagas:       []saga.Definition{fulfilment},
			Commands:    []cqrs.CommandHandler{reserveStock, chargePayment},
		})
		if err != nil {
			return err
		}
		if err := client.Start(ctx); err != nil {
			return err
		}
		defer func() { _ = client.Stop(context.WithoutCancel(ctx)) }()

		// An order is placed; wait until the read model says it is paid,
		// then until the saga processor has consumed everything so far.
		_, err = client.Appender().Append(ctx, "order-1", events.NoStream, events.Event{
			Data: OrderPlaced{OrderID: "1", Cents: 4200}, Metadata: events.Metadata{CorrelationID: "1"},
		})
		if err != nil {
			return err
		}
		orders := client.Projections().View("order_summary").Table("orders")
		deadline := time.Now().Add(10 * time.Second)
		for status := ""; status != "paid"; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				return fmt.Errorf("order 1 is %q, not paid, after 10s", status)
			}
			if status, _, err = projections.Get[string](ctx, orders, "1"); err != nil {
				return err
			}
		}
		head, err := store.Head(ctx)
		if err != nil {
			return err
		}
		if _, err := client.Tracker().Wait(ctx, head, converge.DefaultSagaProcessor); err != nil {
			return err
		}
		tl, err := client.Sagas().Show(ctx, "fulfilment", "1")
		if err != nil {
			return err
		}
		fmt.Println("order 1: paid; fulfilment", tl.Info.Status, string(tl.Info.State))
		return nil
	}
	if err := run(); err != nil {
		panic(err)
	}
	// Output:
	// order 1: paid; fulfilment completed {"Cents":4200}
}

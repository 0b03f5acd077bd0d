package converge_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/projections"
	"github.com/converge-es/converge/saga"
)

// A tiny shop: an order is placed, a saga charges the card through a
// command handler, and a read model keeps each order's status. The saga's
// first step reads the read model, so it runs only once the model has
// caught up with the order.
type (
	OrderPlaced struct {
		OrderID string `json:"order_id"`
		Cents   int    `json:"cents"`
	}
	ChargeCard struct {
		OrderID string `json:"order_id"`
		Cents   int    `json:"cents"`
	}
	CardCharged struct {
		OrderID string `json:"order_id"`
	}
)

func shopRegistry() *events.Registry {
	reg := events.NewRegistry()
	events.Register[OrderPlaced](reg, "shop.order_placed")
	events.Register[ChargeCard](reg, "shop.charge_card")
	events.Register[CardCharged](reg, "shop.card_charged")
	return reg
}

// shop defines the application. Its saga reads the read model through the
// client's views, so it is handed a way to reach them.
func shop(store events.Store, views func(name string) *projections.View) *converge.Config {
	status := projections.New("order_status", nil)
	projections.On(status, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderPlaced) error {
		return tx.Table("orders").Put(ctx, e.OrderID, "placed")
	})
	projections.On(status, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e CardCharged) error {
		return tx.Table("orders").Put(ctx, e.OrderID, "paid")
	})

	type checkout struct{ Cents int }
	flow := saga.New[checkout]("checkout", nil)
	saga.StartOn(flow, func(e OrderPlaced, _ events.Envelope) string { return e.OrderID },
		func(s *saga.Step[checkout], e OrderPlaced) error {
			// The gate guarantees the read model has seen this order.
			st, _, err := projections.Get[string](s.Context(), views("order_status").Table("orders"), e.OrderID)
			if err != nil || st != "placed" {
				return fmt.Errorf("read model behind: %q, %w", st, err)
			}
			s.State().Cents = e.Cents
			return s.Send(ChargeCard(e))
		}, saga.Reads("order_status"))
	saga.On(flow, func(e CardCharged, _ events.Envelope) string { return e.OrderID },
		func(s *saga.Step[checkout], _ CardCharged) error {
			s.Complete()
			return nil
		})

	card := events.Aggregate[int]{Apply: func(n int, _ any) (int, error) { return n + 1, nil }}
	charge := command.Handle("charge-card", store, card, func(c ChargeCard) string { return "card-" + c.OrderID },
		func(_ context.Context, _ int, c ChargeCard) ([]any, error) {
			return []any{CardCharged{OrderID: c.OrderID}}, nil
		})
	return &converge.Config{
		Projections: []*projections.Projection{status},
		Sagas:       []saga.Definition{flow},
		Commands:    []cqrs.CommandHandler{charge},
		Logger:      slog.New(slog.DiscardHandler),
	}
}

func Example() {
	ctx := context.Background()
	store, _ := memstore.New(&memstore.Config{Registry: shopRegistry()})
	defer store.Close()
	var client *converge.Client
	cfg := shop(store, func(name string) *projections.View { return client.Projections().View(name) })
	paid := make(chan struct{})
	cfg.OnProjectionUpdate = func(u projections.Update) {
		if string(u.Value) == `"paid"` {
			close(paid)
		}
	}
	client, err := converge.NewClient(store, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := client.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = client.Stop(ctx) }()

	_, _ = client.Appender().Append(ctx, "order-1", events.NoStream, events.Event{
		Data: OrderPlaced{OrderID: "1", Cents: 4200}, Metadata: events.Metadata{CorrelationID: "1"},
	})
	// Wait until the card is charged (the read model says so), then until
	// the saga processor has consumed everything appended so far.
	<-paid
	head, _ := store.Head(ctx)
	if _, err := client.Tracker().Wait(ctx, head, converge.DefaultSagaProcessor); err != nil {
		fmt.Println(err)
		return
	}
	tl, _ := client.Sagas().Show(ctx, "checkout", "1")
	fmt.Println("checkout", tl.Info.Status)
	// Output:
	// checkout completed
}

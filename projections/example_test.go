package projections_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/projections"
)

type OrderPlaced struct {
	Customer string `json:"customer"`
	Total    int    `json:"total"`
}

// orderSummary totals orders per customer.
func orderSummary(class consistency.Class) *projections.Projection {
	p := projections.New("order_summary", &projections.Config{Class: class, Description: "order totals per customer"})
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderPlaced) error {
		customers := tx.Table("customers")
		total, _, err := projections.Get[int](ctx, customers, e.Customer)
		if err != nil {
			return err
		}
		return customers.Put(ctx, e.Customer, total+e.Total)
	})
	return p
}

// An eventually consistent projection: the runner feeds it from the global
// feed, and a reader that needs its own write waits for the write's token.
func Example() {
	ctx := context.Background()
	reg := events.NewRegistry()
	events.Register[OrderPlaced](reg, "order_placed")
	store, err := memstore.New(&memstore.Config{Registry: reg})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	tracker, err := consistency.NewTracker(&consistency.TrackerConfig{Positions: store.Checkpoints(), Watcher: store})
	if err != nil {
		panic(err)
	}
	if err := tracker.Start(ctx); err != nil {
		panic(err)
	}
	defer func() { _ = tracker.Stop(ctx) }()

	runner, err := projections.NewRunner(&projections.RunnerConfig{
		Source:      store,
		Projections: []*projections.Projection{orderSummary(consistency.Eventual)},
		Tracker:     tracker,
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	if err := runner.Start(ctx); err != nil {
		panic(err)
	}
	defer func() { _ = runner.Stop(ctx) }()

	res, err := store.Append(ctx, "order-1", events.NoStream, events.Event{Data: OrderPlaced{Customer: "ada", Total: 30}})
	if err != nil {
		panic(err)
	}
	// Read your own write: wait until the projection reflects the token.
	st, err := tracker.Wait(ctx, res.Token, "order_summary")
	if err != nil {
		panic(err)
	}
	total, _, err := projections.Get[int](ctx, runner.View("order_summary").Table("customers"), "ada")
	if err != nil {
		panic(err)
	}
	fmt.Println("stale:", st.Stale, "total:", total)
	// Output: stale: false total: 30
}

// A strong projection is applied inside the append itself, by a hook the
// runner installs on the store: the read needs no wait.
func ExampleRunner_strong() {
	ctx := context.Background()
	reg := events.NewRegistry()
	events.Register[OrderPlaced](reg, "order_placed")
	store, err := memstore.New(&memstore.Config{Registry: reg})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	runner, err := projections.NewRunner(&projections.RunnerConfig{
		Source:      store,
		Projections: []*projections.Projection{orderSummary(consistency.Strong)},
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	if err := runner.Start(ctx); err != nil {
		panic(err)
	}
	defer func() { _ = runner.Stop(ctx) }()

	for _, total := range []int{30, 12} {
		if _, err := store.Append(ctx, "order-2", events.AnyVersion, events.Event{Data: OrderPlaced{Customer: "bob", Total: total}}); err != nil {
			panic(err)
		}
		sum, _, err := projections.Get[int](ctx, runner.View("order_summary").Table("customers"), "bob")
		if err != nil {
			panic(err)
		}
		fmt.Println("total right after the append:", sum)
	}
	// Output:
	// total right after the append: 30
	// total right after the append: 42
}

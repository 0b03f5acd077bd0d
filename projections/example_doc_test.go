package projections_test

import (
	"context"
	"fmt"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/projections"
)

// The package doc's example: a projection defined, run with a Tracker and
// a Catalog, and read. Its reader reads before any order and again once
// the Tracker says the projection has applied ada's first order.
func ExampleNewRunner() {
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
	catalog := &consistency.Catalog{}

	run := func() error {
		summary := projections.New("order_summary", &projections.Config{
			Description: "order totals per customer", // SLA defaults to 2s
		})
		projections.On(summary, func(ctx context.Context, tx *projections.Tx, env events.Envelope, e OrderPlaced) error {
			customers := tx.Table("customers")
			total, _, err := projections.Get[int](ctx, customers, e.Customer)
			if err != nil {
				return err
			}
			return customers.Put(ctx, e.Customer, total+e.Total)
		})

		runner, err := projections.NewRunner(&projections.RunnerConfig{
			Source:      store, // a *pgstore.Store or a *memstore.Store
			Projections: []*projections.Projection{summary},
			Tracker:     tracker, // optional: advanced after every commit
			Catalog:     catalog, // optional: every projection's class and SLA
		})
		if err != nil {
			return err
		}
		if err := runner.Start(ctx); err != nil {
			return err
		}
		defer func() { _ = runner.Stop(ctx) }()

		// Readers always read the active generation.
		total, ok, err := projections.Get[int](ctx, runner.View("order_summary").Table("customers"), "ada")
		if err != nil {
			return err
		}
		fmt.Println("before any order:", total, ok)

		placed, err := store.Append(ctx, "order-1", events.NoStream, events.Event{Data: OrderPlaced{Customer: "ada", Total: 30}})
		if err != nil {
			return err
		}
		if _, err := tracker.Wait(ctx, placed.Token, "order_summary"); err != nil {
			return err
		}
		total, ok, err = projections.Get[int](ctx, runner.View("order_summary").Table("customers"), "ada")
		if err != nil {
			return err
		}
		fmt.Println("once ada's order is applied:", total, ok)
		return nil
	}
	if err := run(); err != nil {
		panic(err)
	}
	fmt.Print(catalog.MarkdownTable())
	// Output:
	// before any order: 0 false
	// once ada's order is applied: 30 true
	// | Read model | Consistency | SLA | Description |
	// |---|---|---|---|
	// | `order_summary` | eventual | 2s | order totals per customer |
}

package orders_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/examples/orders"
)

// The whole app, from store to running, in memory. On PostgreSQL only the
// store changes: pgstore.New(ctx, pool, &pgstore.Config{Registry: ...}).
func Example() {
	ctx := context.Background()
	store, err := memstore.New(&memstore.Config{Registry: orders.NewRegistry()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	app, err := orders.NewApp(store, &orders.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := app.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = app.Stop(ctx) }()

	_, _ = app.Restock(ctx, "tea", 10)
	for _, o := range []orders.PlaceOrder{
		{OrderID: "o-1", CustomerID: "ada", SKU: "tea", Qty: 2, Card: orders.CardOK},
		{OrderID: "o-2", CustomerID: "ada", SKU: "tea", Qty: 1, Card: orders.CardDeclined},
		{OrderID: "o-3", CustomerID: "bob", SKU: "teapot", Qty: 1, Card: orders.CardOK},
	} {
		if _, err := app.Place(ctx, o); err != nil {
			fmt.Println(err)
			return
		}
		s, err := app.Await(ctx, o.OrderID)
		if err != nil {
			fmt.Println(err)
			return
		}
		if s.Reason != "" {
			s.Status += ": " + s.Reason
		}
		fmt.Println(s.OrderID, s.Status)
	}
	// Output:
	// o-1 confirmed
	// o-2 cancelled: payment declined: card declined
	// o-3 cancelled: out of stock: 0 of teapot left, 1 ordered
}

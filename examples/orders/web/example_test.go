package web_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/examples/orders"
	"github.com/converge-es/converge/examples/orders/web"
)

// The order workflow served in memory: place an order, then read it back
// with the write's token, as the page does.
func Example() {
	ctx := context.Background()
	store, err := memstore.New(&memstore.Config{Registry: orders.NewRegistry()})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	// The app reports order changes to the server, which pushes them to
	// the pages following them; the server exists before the app starts.
	var srv *web.Server
	app, err := web.NewApp(&web.AppConfig{
		Store: store, Logger: slog.New(slog.DiscardHandler),
		OnChange: func(v web.OrderView) { srv.Publish(v) },
	})
	if err != nil {
		panic(err)
	}
	srv, err = web.New(&web.Config{
		Orders: app, Tracker: app.Tracker(), ReadModels: app.ReadModels(), Ops: app.Ops(),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	if err := app.Start(ctx); err != nil {
		panic(err)
	}
	defer func() { _ = app.Stop(ctx) }()
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	defer srv.Close()

	resp, err := http.Post(hs.URL+"/orders", "application/json", strings.NewReader(`{"customer_id":"c-1","sku":"tea","qty":2,"card":"4242-4242-4242-4242"}`))
	if err != nil {
		panic(err)
	}
	_ = resp.Body.Close()
	fmt.Println("POST /orders:", resp.Status)

	// Location carries the token: this read reflects the write, or is not
	// a 2xx.
	resp, err = http.Get(hs.URL + resp.Header.Get("Location"))
	if err != nil {
		panic(err)
	}
	_ = resp.Body.Close()
	fmt.Println("GET /orders/{id}:", resp.Status, "stale:", resp.Header.Get(consistency.HeaderStale))
	// Output:
	// POST /orders: 202 Accepted
	// GET /orders/{id}: 200 OK stale: false
}

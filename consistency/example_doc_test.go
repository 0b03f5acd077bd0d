package consistency_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/projections"
)

type (
	// OrderPlaced is the event a write appends.
	OrderPlaced struct {
		OrderID string `json:"order_id"`
		Cents   int    `json:"cents"`
	}
	// Order is a row of the order_summary read model.
	Order struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
)

// orderQueries reads the order_summary read model.
type orderQueries struct{ view *projections.View }

// Get is the read-model query: the order with id.
func (q orderQueries) Get(ctx context.Context, id string) (Order, error) {
	o, ok, err := projections.Get[Order](ctx, q.view.Table("orders"), id)
	if err == nil && !ok {
		err = errors.New("no order " + id)
	}
	return o, err
}

// The package doc's example, on the in-memory store: a projection builds
// order_summary, and a Tracker fed by the store's checkpoint moves lets a
// read, in code or over HTTP, wait for the order its caller just placed.
func ExampleNewTracker() {
	ctx := context.Background()
	reg := events.NewRegistry()
	events.Register[OrderPlaced](reg, "order_placed")
	store, err := memstore.New(&memstore.Config{Registry: reg})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	summary := projections.New("order_summary", nil)
	projections.On(summary, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderPlaced) error {
		return tx.Table("orders").Put(ctx, e.OrderID, Order{ID: e.OrderID, Status: "placed"})
	})
	runner, err := projections.NewRunner(&projections.RunnerConfig{
		Source:      store,
		Projections: []*projections.Projection{summary},
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	if err := runner.Start(ctx); err != nil {
		panic(err)
	}
	defer func() { _ = runner.Stop(ctx) }()
	orders := orderQueries{view: runner.View("order_summary")}
	getOrder := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o, err := orders.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode(o)
	})
	mux := http.NewServeMux()

	// The write: its token is what the caller sends back on reads.
	placed, err := store.Append(ctx, "order-1", events.NoStream, events.Event{Data: OrderPlaced{OrderID: "1", Cents: 4200}})
	if err != nil {
		panic(err)
	}
	tok, id := placed.Token, "1"

	run := func() error {
		tr, err := consistency.NewTracker(&consistency.TrackerConfig{
			Positions:   store.Checkpoints(), // seeds and fallback
			Watcher:     store,               // push: checkpoint moves
			PushHealthy: store.PushHealthy,
		})
		if err != nil {
			return err
		}
		if err := tr.Start(ctx); err != nil {
			return err
		}
		defer func() { _ = tr.Stop(context.Background()) }()

		// In code (orders.Get is your read-model query):
		res, err := consistency.Read(ctx, tr, tok, []string{"order_summary"},
			func(ctx context.Context) (Order, error) { return orders.Get(ctx, id) })
		if err != nil {
			return err
		}
		if res.Stale {
			log.Printf("order %s: shown as pending, its read model is behind", id)
		}
		// A stale wait still answers: the query gets its own budget
		// (TrackerConfig.QueryTimeout) once the wait's deadline is spent.

		// Over HTTP (getOrder is your http.Handler):
		mux.Handle("GET /orders/{id}", consistency.Middleware(tr, &consistency.HTTPConfig{
			Names: []string{"order_summary"},
		})(getOrder))

		fmt.Printf("in code: %+v (stale: %t)\n", res.Value, res.Stale)
		srv := httptest.NewServer(mux)
		defer srv.Close()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/orders/"+id, nil)
		if err != nil {
			return err
		}
		req.Header.Set(consistency.HeaderPosition, tok.String())
		resp, err := srv.Client().Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		fmt.Printf("over HTTP: %s (stale: %s) %s", resp.Status, resp.Header.Get(consistency.HeaderStale), body)
		return nil
	}
	if err := run(); err != nil {
		panic(err)
	}
	// Output:
	// in code: {ID:1 Status:placed} (stale: false)
	// over HTTP: 200 OK (stale: false) {"id":"1","status":"placed"}
}

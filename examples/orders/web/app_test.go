package web_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/examples/orders"
	"github.com/converge-es/converge/examples/orders/web"
	"github.com/converge-es/converge/internal/pgtest"
)

// appBundle is the order workflow of examples/orders served in memory.
type appBundle struct {
	*bundle
	app     *web.App
	changes chan web.OrderView
}

// setupApp runs the examples/orders workflow in memory behind a Server,
// calling each of before on the App before starting it.
func setupApp(t *testing.T, before ...func(*web.App)) *appBundle {
	t.Helper()
	store, err := memstore.New(&memstore.Config{Registry: orderRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	return setupAppOn(t, store, before...)
}

// setupAppOnPostgres is setupApp on PostgreSQL, in a fresh schema.
func setupAppOnPostgres(t *testing.T) *appBundle {
	t.Helper()
	db := pgtest.New(t, nil)
	store, err := pgstore.New(context.Background(), db.Pool, &pgstore.Config{Schema: db.Schema, Registry: orderRegistry(), Logger: discardLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	return setupAppOn(t, store)
}

func orderRegistry() *events.Registry {
	reg := events.NewRegistry()
	orders.Register(reg)
	return reg
}

// setupAppOn runs the workflow on store behind a Server.
func setupAppOn(t *testing.T, store orders.Backend, before ...func(*web.App)) *appBundle {
	t.Helper()
	var err error
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	ab := &appBundle{changes: make(chan web.OrderView, 100)}
	var srv *web.Server
	ab.app, err = web.NewApp(&web.AppConfig{Store: store, Logger: logger, OnChange: func(v web.OrderView) {
		srv.Publish(v)
		select {
		case ab.changes <- v:
		default: // the test reads only what it needs
		}
	}})
	require.NoError(t, err)
	srv, err = web.New(&web.Config{
		Orders: ab.app, Tracker: ab.app.Tracker(), ReadModels: ab.app.ReadModels(), Ops: ab.app.Ops(),
		Catalog: ab.app.Catalog(), Logger: logger,
	})
	require.NoError(t, err)
	for _, f := range before {
		f(ab.app)
	}
	require.NoError(t, ab.app.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, ab.app.Stop(context.Background())) })
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	t.Cleanup(srv.Close)
	ab.bundle = &bundle{url: hs.URL, client: hs.Client(), server: srv}
	return ab
}

// await returns the first change of order id to a settled status.
func (ab *appBundle) await(t *testing.T, id string) web.OrderView {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case v := <-ab.changes:
			if v.OrderID == id && v.Status != web.StatusPending {
				return v
			}
		case <-timeout:
			t.Fatalf("order %s never settled", id)
		}
	}
}

func TestApp_OrdersSettleThroughThePaymentStep(t *testing.T) {
	t.Parallel()
	for name, setup := range map[string]func(*testing.T) *appBundle{
		"memory":     func(t *testing.T) *appBundle { t.Helper(); return setupApp(t) },
		"postgresql": setupAppOnPostgres,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testOrdersSettle(t, setup(t))
		})
	}
}

func testOrdersSettle(t *testing.T, ab *appBundle) {
	t.Helper()

	small, tok := ab.place(t, "c-1", 4990)
	r := ab.get(t, "/orders/"+small, withToken(tok))
	require.Equal(t, http.StatusOK, r.status, "the order summary caught up with the write within the wait: %s", r.body)
	require.Equal(t, "false", r.header.Get(consistency.HeaderStale))
	require.Equal(t, "c-1", r.json(t)["customer_id"])
	require.EqualValues(t, 4990, r.json(t)["amount_cents"])

	v := ab.await(t, small)
	require.Equal(t, web.StatusConfirmed, v.Status)
	require.False(t, v.Position.Before(tok))

	large, _ := ab.place(t, "c-1", orders.DeclineAboveCents+1)
	v = ab.await(t, large)
	require.Equal(t, web.StatusCancelled, v.Status)
	require.Contains(t, v.Reason, "over the")

	// The settled state, read back with the token of the change.
	r = ab.get(t, "/orders/"+large, withToken(v.Position))
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, web.StatusCancelled, r.json(t)["status"])
	require.Equal(t, v.Reason, r.json(t)["reason"])

	dls, err := ab.app.Ops().DeadLetters(context.Background())
	require.NoError(t, err)
	require.Empty(t, dls)
	targets := ab.app.LagTargets(time.Minute)
	require.Equal(t, orders.OrderSummary, targets[0].Name)
	require.Equal(t, 2*time.Second, targets[0].SLA, "the read model's declared SLA")
	require.Equal(t, orders.PaymentsConsumer, targets[len(targets)-1].Name)
}

func TestApp_ListsACustomersOrdersInPages(t *testing.T) {
	t.Parallel()
	// Batches of 3 rows, at most 6 rows a call: pages end early, with a
	// cursor, and paging still returns every order once.
	ab := setupApp(t, func(a *web.App) { a.SetListScan(3, 6) })
	var want []string
	var last events.Token
	for i := range 5 {
		id, _ := ab.place(t, "c-9", int64(100+i))
		want = append(want, id)
		for range 3 {
			_, last = ab.place(t, "c-8", 1)
		}
	}
	var got []string
	after, short := "", false
	for range 10 {
		views, next, err := listWith(t, ab, last, after)
		require.NoError(t, err)
		for _, v := range views {
			got = append(got, v.OrderID)
		}
		if next == "" {
			break
		}
		short = short || len(views) < 2
		after = next
	}
	require.Equal(t, want, got, "every order once, in placing order")
	require.True(t, short, "a scan limit ended a page early")

	_, _, err := ab.app.List(context.Background(), "c-9", web.PageQuery{Limit: 2, After: "bad\x00cursor"})
	require.ErrorIs(t, err, web.ErrInvalidCursor)
}

// listWith reads one page of c-9's orders over HTTP with token tok.
func listWith(t *testing.T, ab *appBundle, tok events.Token, after string) ([]web.OrderView, string, error) {
	t.Helper()
	path := "/orders?customer=c-9&limit=2"
	if after != "" {
		path += "&after=" + after
	}
	r := ab.get(t, path, withToken(tok))
	require.Equal(t, http.StatusOK, r.status, "body %s", r.body)
	require.Equal(t, "false", r.header.Get(consistency.HeaderStale))
	var page struct {
		Orders []web.OrderView `json:"orders"`
		Next   string          `json:"next"`
	}
	err := jsonUnmarshal(r.body, &page)
	return page.Orders, page.Next, err
}

package web_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/examples/orders"
	"github.com/converge-es/converge/examples/orders/web"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/saga"
)

// appBundle is the order service of examples/orders behind a Server.
type appBundle struct {
	*bundle
	app     *web.App
	changes chan web.OrderView
}

// appStores builds each store the service runs on.
var appStores = map[string]func(t *testing.T) converge.Store{
	"memory": func(t *testing.T) converge.Store {
		t.Helper()
		store, err := memstore.New(&memstore.Config{Registry: orders.NewRegistry()})
		require.NoError(t, err)
		t.Cleanup(func() { _ = store.Close() })
		return store
	},
	"postgresql": func(t *testing.T) converge.Store {
		t.Helper()
		db := pgtest.New(t, nil)
		store, err := pgstore.New(context.Background(), db.Pool, &pgstore.Config{Schema: db.Schema, Registry: orders.NewRegistry(), Logger: discardLogger()})
		require.NoError(t, err)
		t.Cleanup(func() { _ = store.Close() })
		return store
	},
}

// forEachAppStore runs fn on each store, in parallel subtests.
func forEachAppStore(t *testing.T, fn func(t *testing.T, store converge.Store)) {
	t.Helper()
	for name, mk := range appStores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, mk(t))
		})
	}
}

// setupApp runs the service in memory behind a Server; change may adjust
// its config first.
func setupApp(t *testing.T, change func(*web.AppConfig)) *appBundle {
	t.Helper()
	return setupAppOn(t, appStores["memory"](t), change)
}

// setupAppOn runs the service on store behind a Server, with every
// product in stock.
func setupAppOn(t *testing.T, store converge.Store, change func(*web.AppConfig)) *appBundle {
	t.Helper()
	logger := discardLogger()
	ab := &appBundle{changes: make(chan web.OrderView, 100)}
	var srv *web.Server
	cfg := &web.AppConfig{Store: store, Logger: logger, OnChange: func(v web.OrderView) {
		srv.Publish(v)
		select {
		case ab.changes <- v:
		default: // the test reads only what it needs
		}
	}}
	if change != nil {
		change(cfg)
	}
	var err error
	ab.app, err = web.NewApp(cfg)
	require.NoError(t, err)
	hist := newLagHistory(t, nil)
	srv, err = web.New(&web.Config{
		Orders: ab.app, Tracker: ab.app.Tracker(), ReadModels: ab.app.ReadModels(), Ops: ab.app.Ops(),
		Catalog: ab.app.Catalog(), Lag: hist, Logger: logger,
	})
	require.NoError(t, err)
	require.NoError(t, ab.app.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, ab.app.Stop(context.Background())) })
	// The dashboard's chart follows the client's own lag monitor.
	fctx, stopFollow := context.WithCancel(context.Background())
	followed := make(chan struct{})
	go func() { defer close(followed); hist.Follow(fctx, ab.app.Lag()) }()
	t.Cleanup(func() { stopFollow(); <-followed })
	require.NoError(t, ab.app.StockShelves(context.Background(), 1000))
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	t.Cleanup(srv.Close)
	ab.bundle = &bundle{url: hs.URL, client: hs.Client(), server: srv}
	return ab
}

// await returns the first change of order id to a settled status.
func (ab *appBundle) await(t *testing.T, id string) web.OrderView {
	t.Helper()
	timeout := time.After(30 * time.Second)
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

// withPatientToken sends tok and asks for the longest wait the tracker
// allows: a loaded machine may take seconds to start the read models.
func withPatientToken(tok events.Token) http.Header {
	h := withToken(tok)
	h.Set(consistency.HeaderTimeout, "10000")
	return h
}

// pausable holds a read model while paused; release lets it go on.
type pausable struct {
	model string
	mu    sync.Mutex
	ch    chan struct{}
}

func newPausable(t *testing.T, model string) *pausable {
	t.Helper()
	p := &pausable{model: model, ch: make(chan struct{})}
	close(p.ch)
	return p
}

func (p *pausable) pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ch = make(chan struct{})
}

func (p *pausable) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.ch:
	default:
		close(p.ch)
	}
}

func (p *pausable) before(ctx context.Context, model string, _ events.Envelope) error {
	if model != p.model {
		return nil
	}
	p.mu.Lock()
	ch := p.ch
	p.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func TestApp_OrdersSettleThroughTheFulfilmentSaga(t *testing.T) {
	t.Parallel()
	forEachAppStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ab := setupAppOn(t, store, nil)

		ok, tok := ab.place(t, "c-1", 2)
		r := ab.get(t, "/orders/"+ok, withPatientToken(tok))
		require.Equal(t, http.StatusOK, r.status, "the order summary caught up with the write within the wait: %s", r.body)
		require.Equal(t, "false", r.header.Get(consistency.HeaderStale))
		require.Equal(t, "c-1", r.json(t)["customer_id"])
		require.Equal(t, "tea", r.json(t)["sku"])
		require.EqualValues(t, 2*orders.Catalog["tea"], r.json(t)["amount_cents"], "the domain priced the order")

		v := ab.await(t, ok)
		require.Equal(t, web.StatusConfirmed, v.Status)
		require.False(t, v.Position.Before(tok))

		declined, _ := ab.placeOrder(t, web.PlaceOrder{CustomerID: "c-1", SKU: "mug", Qty: 1, Card: orders.CardDeclined})
		v = ab.await(t, declined)
		require.Equal(t, web.StatusCancelled, v.Status)
		require.Equal(t, "payment declined: card declined", v.Reason)

		// The settled state, read back with the token of the change.
		r = ab.get(t, "/orders/"+declined, withPatientToken(v.Position))
		require.Equal(t, http.StatusOK, r.status)
		require.Equal(t, web.StatusCancelled, r.json(t)["status"])
		require.Equal(t, v.Reason, r.json(t)["reason"])

		// A product the catalog does not sell is the domain's 422.
		body := mustJSON(t, web.PlaceOrder{CustomerID: "c-1", SKU: "scone", Qty: 1, Card: orders.CardOK})
		p := ab.do(t, http.MethodPost, "/orders", jsonHeader(), strings.NewReader(body)).problem(t, 422, web.ProblemValidation)
		require.Equal(t, "sku", as[map[string]any](t, as[[]any](t, p["errors"])[0])["field"])

		dls, err := ab.app.Ops().DeadLetters(context.Background())
		require.NoError(t, err)
		require.Empty(t, dls)
		counts, err := ab.app.Ops().SagaCounts(context.Background())
		require.NoError(t, err)
		require.Equal(t, map[string]int{"completed": 1, "failed": 1}, counts, "one confirmed, one declined")
	})
}

func TestApp_ListsACustomersOrdersInPages(t *testing.T) {
	t.Parallel()
	ab := setupApp(t, nil)
	var want []string
	var last events.Token
	for i := range 5 {
		id, _ := ab.place(t, "c-9", 1+i)
		want = append(want, id)
		_, last = ab.place(t, "c-8", 1)
	}
	var got []string
	after := ""
	for range 10 {
		views, next, err := listWith(t, ab, last, after)
		require.NoError(t, err)
		require.LessOrEqual(t, len(views), 2)
		for _, v := range views {
			require.Equal(t, "c-9", v.CustomerID)
			got = append(got, v.OrderID)
		}
		if next == "" {
			break
		}
		after = next
	}
	require.Equal(t, want, got, "every order once, in placing order")

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
	r := ab.get(t, path, withPatientToken(tok))
	require.Equal(t, http.StatusOK, r.status, "body %s", r.body)
	require.Equal(t, "false", r.header.Get(consistency.HeaderStale))
	var page struct {
		Orders []web.OrderView `json:"orders"`
		Next   string          `json:"next"`
	}
	err := jsonUnmarshal(r.body, &page)
	return page.Orders, page.Next, err
}

// TestAppOps_OnTheRealSagaEngine: the dashboard's Ops list, show, retry
// and cancel the fulfilment saga's instances.
func TestAppOps_OnTheRealSagaEngine(t *testing.T) {
	t.Parallel()
	forEachAppStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		summary := newPausable(t, orders.OrderSummary)
		ab := setupAppOn(t, store, func(c *web.AppConfig) {
			c.Orders = orders.Config{BeforeApply: summary.before, StuckAfter: 2 * time.Second, CreditLimitCents: 10_000}
		})
		t.Cleanup(summary.release) // before the app stops
		ops := ab.app.Ops()

		// A card that never gets an answer: the instance waits for the
		// payment, and an operator cancels it.
		waiting, _ := ab.placeOrder(t, web.PlaceOrder{CustomerID: "c-1", SKU: "tea", Qty: 1, Card: orders.CardNoAnswer})
		require.Eventually(t, func() bool {
			d, err := ops.Saga(ctx, waiting)
			return err == nil && d.Step == "waiting for the payment"
		}, 30*time.Second, 10*time.Millisecond)
		running, err := ops.Sagas(ctx, web.SagaFilter{Status: string(saga.StatusRunning)})
		require.NoError(t, err)
		require.Len(t, running, 1)
		require.Equal(t, waiting, running[0].ID)
		require.Equal(t, orders.Fulfilment, running[0].Type)
		require.NoError(t, ops.Cancel(ctx, waiting))
		d, err := ops.Saga(ctx, waiting)
		require.NoError(t, err)
		require.Equal(t, string(saga.StatusCancelled), d.Status)
		// The cancel undid what the order asked for: its status, its
		// stock, its payment.
		require.Equal(t, web.StatusCancelled, ab.await(t, waiting).Status, "the order reads cancelled")
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			have, err := ab.app.Service().OnHand(ctx, "tea")
			require.NoError(c, err)
			assert.Equal(c, 1000, have, "the reserved unit is back on the shelf")
		}, 30*time.Second, 10*time.Millisecond)
		require.Equal(t, saga.KindCancelled, d.Timeline[len(d.Timeline)-1].Kind)
		require.ErrorIs(t, ops.Cancel(ctx, waiting), web.ErrSagaConflict, "it has ended")
		require.ErrorIs(t, ops.Retry(ctx, waiting), web.ErrSagaConflict, "nothing to retry")

		// Over the credit limit: failed by the saga's own decision, with
		// its reason.
		big, _ := ab.placeOrder(t, web.PlaceOrder{CustomerID: "c-2", SKU: "grinder", Qty: 2, Card: orders.CardOK})
		require.Equal(t, web.StatusCancelled, ab.await(t, big).Status)
		failed, err := ops.Sagas(ctx, web.SagaFilter{Status: string(saga.StatusFailed)})
		require.NoError(t, err)
		require.Len(t, failed, 1)
		require.Equal(t, big, failed[0].ID)
		require.Contains(t, failed[0].Error, "credit limit")

		// order_summary paused: the credit check parks, and is flagged
		// stuck; a retry restarts its clock, and it completes once the
		// read model resumes. (StuckAfter is 2s: the checks right after
		// the retry must come before the sweep flags it again, on a
		// loaded machine too.)
		summary.pause()
		stuck, _ := ab.place(t, "c-3", 1)
		require.Eventually(t, func() bool {
			ss, err := ops.Sagas(ctx, web.SagaFilter{Stuck: true})
			return err == nil && len(ss) == 1 && ss[0].ID == stuck
		}, 30*time.Second, 20*time.Millisecond, "the sweep flags the parked step stuck")
		d, err = ops.Saga(ctx, stuck)
		require.NoError(t, err)
		require.Equal(t, "waiting for "+orders.OrderSummary, d.Step)
		require.Equal(t, saga.KindStuck, d.Timeline[len(d.Timeline)-1].Kind)
		require.NoError(t, ops.Retry(ctx, stuck))
		d, err = ops.Saga(ctx, stuck)
		require.NoError(t, err)
		require.False(t, d.Stuck)
		require.Equal(t, saga.KindRetried, d.Timeline[len(d.Timeline)-1].Kind)
		summary.release()
		require.Equal(t, web.StatusConfirmed, ab.await(t, stuck).Status)

		_, err = ops.Saga(ctx, "no-such-order")
		require.ErrorIs(t, err, web.ErrSagaNotFound)
		require.ErrorIs(t, ops.Retry(ctx, "bad/id"), web.ErrSagaNotFound)
	})
}

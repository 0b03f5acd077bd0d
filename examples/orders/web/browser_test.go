package web_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/examples/orders"
	"github.com/converge-es/converge/examples/orders/web"
	"github.com/converge-es/converge/internal/browsertest"
	"github.com/converge-es/converge/saga"
)

// browserTimeout bounds a whole browser test, start-up included.
const browserTimeout = 60 * time.Second

// pollTimeout bounds each wait for the page to show something.
const pollTimeout = 15 * time.Second

// newBrowser starts a headless Chromium for one test (browsertest.New).
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	return browsertest.New(t, browserTimeout)
}

// poll waits until the JavaScript expression is true, and fails with what
// describe (another expression) says when it never is.
func poll(t *testing.T, ctx context.Context, expr, describe string) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(pollTimeout)))
	if err != nil {
		got, _ := chromedp.Run(ctx, chromedp.Evaluate[string](describe))
		require.NoError(t, err, "waited for %s; the page shows: %s", expr, got)
	}
}

// click clicks the element selector names from inside the page, once it is
// there. The dashboard re-renders its lists as they refresh: a click by
// node id (chromedp.Click) can find the node gone between looking it up
// and clicking it, on a loaded machine.
func click(t *testing.T, ctx context.Context, selector string) {
	t.Helper()
	sel, err := json.Marshal(selector)
	require.NoError(t, err)
	poll(t, ctx, `(() => { const el = document.querySelector(`+string(sel)+`); if (!el) return false; el.click(); return true })()`,
		`"no element matches "+`+string(sel))
}

// eval returns the value of a JavaScript expression.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	require.NoError(t, err, expr)
	return v
}

func js(t *testing.T, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	require.NoError(t, err)
	return string(b)
}

// placeInPage fills the form and submits it, and returns the new order's
// id once the page lists it.
func placeInPage(t *testing.T, ctx context.Context, customer, sku, qty, card string, before int) string {
	t.Helper()
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SetValue(chromedp.ID("customer"), customer),
		chromedp.SetValue(chromedp.ID("sku"), sku),
		chromedp.SetValue(chromedp.ID("qty"), qty),
		chromedp.SetValue(chromedp.ID("card"), card),
		chromedp.Click(chromedp.ID("place")),
	))
	poll(t, ctx, `document.querySelectorAll("#orders li").length > `+itoa(before),
		`document.getElementById("form-error").textContent + " | " + document.getElementById("orders").textContent`)
	return eval[string](t, ctx, `document.querySelector("#orders li").dataset.orderId`)
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// orderExpr is a JavaScript expression for the page's row of order id.
func orderExpr(t *testing.T, id string) string {
	t.Helper()
	return `document.getElementById(` + js(t, "order-"+id) + `)`
}

// awaitStatus waits until the page shows order id with status.
func awaitStatus(t *testing.T, ctx context.Context, id, status string) {
	t.Helper()
	li := orderExpr(t, id)
	poll(t, ctx, `(function(){var li = `+li+`; return !!li && li.dataset.status === `+js(t, status)+
		` && li.querySelector("[data-role=status]").textContent === `+js(t, status)+`})()`,
		`document.getElementById("orders").innerText`)
}

func TestPage_ShowsPendingThenConfirmedOrCancelled_InBrowser(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := newBrowser(t)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(b.url+"/")))
	poll(t, ctx, `document.getElementById("live-status").textContent === "Live updates: connected"`, `document.getElementById("live-status").textContent`)

	// 1. The read model lags: the page shows the order as pending at once,
	// and keeps reading it back with the write's token.
	first := placeInPage(t, ctx, "c-1", "tea", "2", orders.CardOK, 0)
	awaitStatus(t, ctx, first, web.StatusPending)
	require.Contains(t, eval[string](t, ctx, orderExpr(t, first)+`.innerText`), "c-1 · 2 × tea")
	require.Len(t, b.orders.log, 1, "the page placed one order")
	// The read model catches up with the order and its confirmation: the
	// page's token-aware read (no push at all) shows it confirmed.
	b.orders.SetStatus(first, web.StatusConfirmed, "")
	b.orders.Apply()
	awaitStatus(t, ctx, first, web.StatusConfirmed)
	require.Contains(t, eval[string](t, ctx, orderExpr(t, first)+`.innerText`), "c-1 · 2 × tea · 9.00 EUR", "the amount the domain priced")

	// 2. An order that the read model shows as pending (the read-back is
	// done), then cancelled: only the live push can bring that news.
	second := placeInPage(t, ctx, "c-2", "mug", "1", orders.CardDeclined, 1)
	awaitStatus(t, ctx, second, web.StatusPending)
	for _, v := range b.orders.Apply() {
		b.server.Publish(v)
	}
	poll(t, ctx, orderExpr(t, second)+`.querySelector("[data-role=note]").textContent === "processing…"`, orderExpr(t, second)+`.innerText`)
	b.orders.SetStatus(second, web.StatusCancelled, "payment declined: card declined")
	for _, v := range b.orders.Apply() {
		b.server.Publish(v)
	}
	awaitStatus(t, ctx, second, web.StatusCancelled)
	require.Equal(t, "Reason: payment declined: card declined",
		eval[string](t, ctx, orderExpr(t, second)+`.querySelector("[data-role=reason]").textContent`))
	awaitStatus(t, ctx, first, web.StatusConfirmed) // untouched

	// 3. A refused order: the problem's field errors land by their inputs.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Evaluate[chromedp.Void](`document.getElementById("customer").value = ""`),
		chromedp.Click(chromedp.ID("place")),
	))
	poll(t, ctx, `document.getElementById("customer-error").textContent !== ""`, `document.getElementById("form-error").textContent`)
	require.Equal(t, "true", eval[string](t, ctx, `document.getElementById("customer").getAttribute("aria-invalid")`))
	require.Contains(t, eval[string](t, ctx, `document.getElementById("form-error").textContent`), "Invalid order")
	require.Len(t, b.orders.log, 4, "two orders and their settlements; nothing for the refused one")

	// 4. A reload keeps the tab's orders, and a pending one still settles.
	third := placeInPage(t, ctx, "c-3", "kettle", "1", orders.CardOK, 2)
	awaitStatus(t, ctx, third, web.StatusPending)
	require.NoError(t, chromedp.Do(ctx, chromedp.Reload()))
	poll(t, ctx, `document.getElementById("live-status").textContent === "Live updates: connected"`, `document.getElementById("live-status").textContent`)
	awaitStatus(t, ctx, first, web.StatusConfirmed)
	awaitStatus(t, ctx, second, web.StatusCancelled)
	awaitStatus(t, ctx, third, web.StatusPending)
	b.orders.SetStatus(third, web.StatusConfirmed, "")
	for _, v := range b.orders.Apply() {
		b.server.Publish(v)
	}
	awaitStatus(t, ctx, third, web.StatusConfirmed)
}

func TestPage_EndToEndOnTheOrderWorkflow_InBrowser(t *testing.T) {
	t.Parallel()
	forEachAppStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ab := setupAppOn(t, store, nil)
		ctx := newBrowser(t)
		require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(ab.url+"/")))
		poll(t, ctx, `document.getElementById("live-status").textContent === "Live updates: connected"`, `document.getElementById("live-status").textContent`)

		ok := placeInPage(t, ctx, "c-1", "coffee", "2", orders.CardOK, 0)
		declined := placeInPage(t, ctx, "c-1", "mug", "1", orders.CardDeclined, 1)
		awaitStatus(t, ctx, ok, web.StatusConfirmed)
		require.Contains(t, eval[string](t, ctx, orderExpr(t, ok)+`.innerText`), "c-1 · 2 × coffee · 25.80 EUR")
		awaitStatus(t, ctx, declined, web.StatusCancelled)
		require.Equal(t, "Reason: payment declined: card declined",
			eval[string](t, ctx, orderExpr(t, declined)+`.querySelector("[data-role=reason]").textContent`))
	})
}

// TestDashboard_OnTheRealEngine_InBrowser: with order_summary paused, the
// dashboard shows its lag breaching the declared 2s SLA, lists the parked
// credit checks as stuck and a refused order as failed, each with its
// timeline, and its Retry and Cancel buttons act on the saga engine.
func TestDashboard_OnTheRealEngine_InBrowser(t *testing.T) {
	t.Parallel()
	forEachAppStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		summary := newPausable(t, orders.OrderSummary)
		ab := setupAppOn(t, store, func(c *web.AppConfig) {
			c.Orders = orders.Config{BeforeApply: summary.before, StuckAfter: 100 * time.Millisecond, CreditLimitCents: 10_000, LagInterval: 100 * time.Millisecond}
		})
		t.Cleanup(summary.release) // before the app stops
		engine := ab.app.Client().Sagas()

		refused, _ := ab.placeOrder(t, web.PlaceOrder{CustomerID: "c-1", SKU: "grinder", Qty: 2, Card: orders.CardOK})
		require.Equal(t, web.StatusCancelled, ab.await(t, refused).Status)
		summary.pause()
		retried, _ := ab.place(t, "c-2", 1)
		cancelled, _ := ab.place(t, "c-3", 1)

		tab := newBrowser(t)
		require.NoError(t, chromedp.Do(tab, chromedp.Navigate(ab.url+"/dashboard")))

		lagFig := `document.querySelector('figure.lag[data-projection="order_summary"]')`
		poll(t, tab, `!!`+lagFig+` && `+lagFig+`.dataset.breached === "true"`, `document.getElementById("lag-charts").innerText`)
		require.Contains(t, eval[string](t, tab, lagFig+`.querySelector(".verdict").textContent`), "SLA breached")
		require.Contains(t, eval[string](t, tab, lagFig+`.querySelector("figcaption").textContent`), "SLA 2")
		require.Equal(t, 1, eval[int](t, tab, lagFig+`.querySelectorAll("line[data-role=sla]").length`), "the chart has the SLA line")
		spending := `document.querySelector('figure.lag[data-projection="customer_spending"]')`
		require.Equal(t, "false", eval[string](t, tab, spending+`.dataset.breached`), "the other read models keep up")

		card := func(list, id string) string {
			return `document.querySelector('#` + list + ` article[data-saga-id="` + id + `"]')`
		}
		poll(t, tab, `!!`+card("stuck", retried)+` && !!`+card("stuck", cancelled), `document.getElementById("stuck").innerText`)
		require.Contains(t, eval[string](t, tab, card("stuck", retried)+`.innerText`), "waiting for order_summary")
		timeline := eval[[]string](t, tab, `Array.from(`+card("stuck", retried)+`.querySelectorAll("details li"), li => li.textContent)`)
		require.NotEmpty(t, timeline)
		require.Contains(t, timeline[len(timeline)-1], "stuck", "the timeline ends with the stuck flag")
		poll(t, tab, `!!`+card("failed", refused)+` && !!`+card("failed", refused)+`.querySelector("details li")`, `document.getElementById("failed").innerText`)
		require.Contains(t, eval[string](t, tab, card("failed", refused)+`.innerText`), "credit limit")
		// The counts come with the stuck list, which may land after the
		// failed one.
		failedCount := `document.querySelector('#saga-counts [data-status="failed"] dd')`
		poll(t, tab, `!!`+failedCount+` && `+failedCount+`.textContent === "1"`, `document.getElementById("saga-counts").innerText`)

		click(t, tab, `#stuck article[data-saga-id="`+cancelled+`"] button[data-action="cancel"]`)
		poll(t, tab, `document.getElementById("action-status").textContent === "cancel of `+cancelled+` accepted"`, `document.getElementById("action-status").textContent`)
		tl, err := engine.Show(ctx, orders.Fulfilment, cancelled)
		require.NoError(t, err)
		require.Equal(t, saga.StatusCancelled, tl.Info.Status)

		click(t, tab, `#stuck article[data-saga-id="`+retried+`"] button[data-action="retry"]`)
		poll(t, tab, `document.getElementById("action-status").textContent === "retry of `+retried+` accepted"`, `document.getElementById("action-status").textContent`)
		tl, err = engine.Show(ctx, orders.Fulfilment, retried)
		require.NoError(t, err)
		require.True(t, slices.ContainsFunc(tl.History, func(h saga.HistoryEntry) bool { return h.Kind == saga.KindRetried }))

		// A saga that failed by its own decision has nothing to retry: the
		// button reports the engine's refusal.
		click(t, tab, `#failed article[data-saga-id="`+refused+`"] button[data-action="retry"]`)
		poll(t, tab, `document.getElementById("action-status").textContent.startsWith("retry of `+refused+` failed")`, `document.getElementById("action-status").textContent`)

		summary.release()
		require.Equal(t, web.StatusConfirmed, ab.await(t, retried).Status, "the retried order goes through once order_summary resumes")
	})
}

func TestDashboard_ShowsSagasAndActsOnThem_InBrowser(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.ops.sagas = someSagas()
	b.ops.acted = make(chan string, 1)
	b.ops.dls = []web.DeadLetter{{
		ID: "order_summary/1", Consumer: "order_summary", EventID: "e-1", EventType: "orders.order_placed",
		StreamID: "order-1", Reason: "<b>boom</b>", Attempts: 5, At: time.Now(),
	}}
	tab := newBrowser(t)
	require.NoError(t, chromedp.Do(tab, chromedp.Navigate(b.url+"/dashboard")))

	// The lists load in parallel: wait for the first refresh to finish
	// them all, not for one of them.
	poll(t, tab, `document.getElementById("updated").textContent.startsWith("Updated")`, `document.body.innerText`)
	require.True(t, eval[bool](t, tab, `!!document.querySelector('#failed article[data-saga-id="failed-1"] details li')`))
	require.Equal(t, "2", eval[string](t, tab, `document.querySelector('#saga-counts [data-status="running"] dd').textContent`))
	require.Equal(t, "1", eval[string](t, tab, `document.querySelector('#saga-counts [data-status="failed"] dd').textContent`))
	require.Equal(t, []string{"stuck-1"}, eval[[]string](t, tab, `Array.from(document.querySelectorAll("#stuck article"), a => a.dataset.sagaId)`))
	timeline := eval[[]string](t, tab, `Array.from(document.querySelectorAll('#failed article[data-saga-id="failed-1"] details li'), li => li.textContent)`)
	require.Len(t, timeline, 2)
	require.Contains(t, timeline[1], "compensation · release_stock · ReleaseStock failed")
	require.Contains(t, eval[string](t, tab, `document.querySelector('#failed article').innerText`), "inventory service refused: 500")

	click(t, tab, `#failed article[data-saga-id="failed-1"] button[data-action="retry"]`)
	select {
	case a := <-b.ops.acted:
		require.Equal(t, "retry failed-1", a)
	case <-time.After(pollTimeout):
		t.Fatal("the retry button did not reach Ops.Retry")
	}
	poll(t, tab, `document.getElementById("action-status").textContent === "retry of failed-1 accepted"`, `document.getElementById("action-status").textContent`)

	poll(t, tab, `!!document.querySelector('#dead-letters tr[data-id="order_summary/1"]')`, `document.getElementById("dead-letters").innerText`)
	require.Equal(t, 0, eval[int](t, tab, `document.querySelectorAll("#dead-letters b").length`), "a reason is text, never markup")
}

package web_test

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/live"
	"github.com/converge-es/converge/examples/orders"
	"github.com/converge-es/converge/examples/orders/web"
)

// placeManyInPage submits the page's form n times in a row, from inside
// the page, each once the previous one is listed.
func placeManyInPage(t *testing.T, ctx context.Context, n int) {
	t.Helper()
	require.NoError(t, chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`(async () => {
		window.testPlaced = 0;
		for (let i = 0; i < `+itoa(n)+`; i++) {
			const before = document.querySelectorAll("#orders li").length;
			document.getElementById("customer").value = "c-1";
			document.getElementById("card").value = `+js(t, orders.CardOK)+`;
			document.getElementById("place").click();
			while (document.querySelectorAll("#orders li").length === before) { await new Promise(r => setTimeout(r, 5)); }
			window.testPlaced++;
		}
	})(), undefined`)))
	poll(t, ctx, `window.testPlaced === `+itoa(n), `String(window.testPlaced) + " | " + document.getElementById("form-error").textContent`)
}

// noteOf is a JavaScript expression for the note the page shows by order id.
func noteOf(t *testing.T, id string) string {
	t.Helper()
	return orderExpr(t, id) + `.querySelector("[data-role=note]").textContent`
}

// TestPage_OrderBeyondTheLiveSubscriptionLimit_InBrowser: the live hub
// follows at most live.DefaultMaxSubscriptionsPerClient (100) orders for
// one connection and answers the next subscription with an "error". The
// page labels that order "not followed live" and re-reads it itself, so
// its confirmation shows without a push; and it gives up the subscription
// of an order once it is settled, so an order refused before is followed
// live as soon as a subscription is free.
func TestPage_OrderBeyondTheLiveSubscriptionLimit_InBrowser(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	publish := func() {
		for _, v := range b.orders.Apply() {
			b.server.Publish(v)
		}
	}
	// The read model keeps up with the placements, so each read-back ends
	// at once with the order pending.
	stop := make(chan struct{})
	applied := make(chan struct{})
	go func() {
		defer close(applied)
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				publish()
			}
		}
	}()
	ctx := newBrowser(t)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(b.url+"/")))
	poll(t, ctx, `document.getElementById("live-status").textContent === "Live updates: connected"`, `document.getElementById("live-status").textContent`)

	const n = live.DefaultMaxSubscriptionsPerClient + 1
	placeManyInPage(t, ctx, n)
	close(stop)
	<-applied
	publish()
	first, beyond := "o-001", "o-101"
	// Every order is pending; the one beyond the limit says it is not
	// followed live, the others are.
	poll(t, ctx, `Array.from(document.querySelectorAll("#orders li")).every(li => {
		const note = li.querySelector("[data-role=note]").textContent;
		return li.dataset.orderId === `+js(t, beyond)+` ? note.startsWith("processing…") && note.includes("not followed live") : note === "processing…";
	})`, `document.getElementById("orders").innerText.slice(0, 800)`)

	// Confirmed: no push reaches the page for it, its own reads do.
	b.orders.SetStatus(beyond, web.StatusConfirmed, "")
	publish()
	awaitStatus(t, ctx, beyond, web.StatusConfirmed)
	require.Empty(t, eval[string](t, ctx, noteOf(t, beyond)), "a settled order needs no following")

	// One more order: refused as well, the hub still follows 100.
	next := placeInPage(t, ctx, "c-1", "tea", "1", orders.CardOK, n)
	publish()
	poll(t, ctx, noteOf(t, next)+`.includes("not followed live")`, orderExpr(t, next)+`.innerText`)
	// The first order settles (pushed): the page unsubscribes from it, and
	// follows the refused one in its place.
	b.orders.SetStatus(first, web.StatusConfirmed, "")
	publish()
	awaitStatus(t, ctx, first, web.StatusConfirmed)
	poll(t, ctx, noteOf(t, next)+` === "processing…"`, orderExpr(t, next)+`.innerText`)
	b.orders.SetStatus(next, web.StatusCancelled, "payment declined: card declined")
	publish()
	awaitStatus(t, ctx, next, web.StatusCancelled)
}

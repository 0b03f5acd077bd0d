package web_test

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/examples/orders"
	"github.com/converge-es/converge/examples/orders/web"
)

// serveOn serves a fresh Server over a fresh fake domain at addr, as
// `converge serve` starts in memory, and returns the domain with a
// function that stops the server (also run at cleanup).
func serveOn(t *testing.T, addr string) (*fakeOrders, func()) {
	t.Helper()
	tr, err := consistency.NewTracker(&consistency.TrackerConfig{DefaultTimeout: 100 * time.Millisecond, MaxTimeout: 10 * time.Second})
	require.NoError(t, err)
	fo := newFakeOrders(tr)
	s, err := web.New(&web.Config{Orders: fo, Tracker: tr, ReadModels: []string{readModel}, Ops: &fakeOps{}, Logger: discardLogger()})
	require.NoError(t, err)
	l, err := net.Listen("tcp", addr)
	require.NoError(t, err)
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = hs.Serve(l)
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		_ = hs.Shutdown(context.Background())
		s.Close()
		_ = tr.Stop(context.Background())
		<-served
	}
	t.Cleanup(stop)
	return fo, stop
}

// TestPage_OrderARestartedServerLostShowsAsUnknown_InBrowser: `converge
// serve` keeps its orders in memory by default. The server restarts
// without the page's pending order; the page reconnects and resubscribes,
// and the hub's snapshot, finding no such order, sends nothing. The page
// reads the order again with its token, and once the server has answered
// 404 for longer than the wait, shows it as unknown to the server instead
// of "pending · processing…" for ever.
func TestPage_OrderARestartedServerLostShowsAsUnknown_InBrowser(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	fo, stop := serveOn(t, addr)
	ctx := newBrowser(t)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate("http://"+addr+"/")))
	poll(t, ctx, `document.getElementById("live-status").textContent === "Live updates: connected"`, `document.getElementById("live-status").textContent`)
	id := placeInPage(t, ctx, "c-1", "tea", "1", orders.CardOK, 0)
	fo.Apply()
	poll(t, ctx, noteOf(t, id)+` === "processing…"`, orderExpr(t, id)+`.innerText`)

	stop()
	poll(t, ctx, `document.getElementById("live-status").textContent.startsWith("Live updates: disconnected")`, `document.getElementById("live-status").textContent`)
	serveOn(t, addr)
	poll(t, ctx, `document.getElementById("live-status").textContent === "Live updates: connected"`, `document.getElementById("live-status").textContent`)

	awaitStatus(t, ctx, id, "unknown")
	require.Contains(t, eval[string](t, ctx, noteOf(t, id)), "unknown to the server")
	require.Contains(t, eval[string](t, ctx, noteOf(t, id)), "last seen pending")
}

package web_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/examples/orders"
	"github.com/converge-es/converge/examples/orders/web"
)

// snapshotFailure wraps the fake domain. Once armed, the live hub's next
// snapshot read (a Get that did not come through the consistency
// middleware, as every GET /orders/{id} does) waits until the page has
// read an order over HTTP, runs onFail, and fails; while failReads is set
// the page's reads fail too, as with a read model briefly unreachable.
type snapshotFailure struct {
	*fakeOrders
	armed     atomic.Bool
	failReads atomic.Bool
	pageRead  chan struct{} // one per answered page read, without waiting
	onFail    func()
}

func (f *snapshotFailure) Get(ctx context.Context, id string) (web.OrderView, bool, error) {
	if _, page := consistency.StatusFromContext(ctx); page {
		if f.failReads.Load() {
			return web.OrderView{}, false, errors.New("read model unreachable")
		}
		v, found, err := f.fakeOrders.Get(ctx, id)
		select {
		case f.pageRead <- struct{}{}:
		default:
		}
		return v, found, err
	}
	if !f.armed.CompareAndSwap(true, false) {
		return f.fakeOrders.Get(ctx, id)
	}
	select {
	case <-f.pageRead:
	case <-ctx.Done(): // the hub's SnapshotTimeout
	}
	f.onFail()
	return web.OrderView{}, false, errors.New("read model unreachable")
}

// TestPage_OrderWhoseSnapshotFailedIsReadAgain_InBrowser: the page comes
// back (a reload) and resubscribes to its pending order; its read of the
// order answers "pending", then the order is confirmed just before the
// subscription takes effect (so no push carries it), and the hub's
// snapshot, the one read that would, fails: the hub sends an "error" for
// the order. The page says the order may be out of date, re-reads it with
// its token until a read succeeds, and then shows it confirmed, the note
// gone.
func TestPage_OrderWhoseSnapshotFailedIsReadAgain_InBrowser(t *testing.T) {
	t.Parallel()
	var sf *snapshotFailure
	b := setup(t, func(c *web.Config) {
		sf = &snapshotFailure{fakeOrders: as[*fakeOrders](t, c.Orders), pageRead: make(chan struct{}, 1)}
		c.Orders = sf
	})
	ctx := newBrowser(t)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(b.url+"/")))
	poll(t, ctx, `document.getElementById("live-status").textContent === "Live updates: connected"`, `document.getElementById("live-status").textContent`)
	id := placeInPage(t, ctx, "c-1", "tea", "1", orders.CardOK, 0)
	b.orders.Apply()
	poll(t, ctx, noteOf(t, id)+` === "processing…"`, orderExpr(t, id)+`.innerText`)

	sf.onFail = func() {
		b.orders.SetStatus(id, web.StatusConfirmed, "")
		b.orders.Apply()
		sf.failReads.Store(true) // and the page's next reads fail for a while
	}
	select {
	case <-sf.pageRead: // the read-back's signal, not the reload's
	default:
	}
	sf.armed.Store(true)
	require.NoError(t, chromedp.Do(ctx, chromedp.Reload()))

	poll(t, ctx, `!!`+orderExpr(t, id)+` && `+noteOf(t, id)+`.startsWith("may be out of date")`, `document.getElementById("orders").innerText`)
	require.False(t, sf.armed.Load(), "the snapshot was read")
	require.Equal(t, web.StatusPending, eval[string](t, ctx, orderExpr(t, id)+`.dataset.status`), "the last state the page read")
	sf.failReads.Store(false)
	awaitStatus(t, ctx, id, web.StatusConfirmed)
	require.Empty(t, eval[string](t, ctx, noteOf(t, id)))
}

package orders

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
)

// TestLedgerCheckFindsMoneyAndStockOff: the demo's ledger check passes on
// a run's events, and reports a charge no confirmed order accounts for and
// stock reserved again for an order that was not confirmed.
func TestLedgerCheckFindsMoneyAndStockOff(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, app := startTeaShop(t)
	var err error
	for _, o := range []PlaceOrder{
		{OrderID: "o-1", CustomerID: "ada", SKU: "tea", Qty: 1, Card: CardOK},
		{OrderID: "o-2", CustomerID: "bob", SKU: "tea", Qty: 2, Card: CardDeclined},
	} {
		_, err = app.Place(ctx, o)
		require.NoError(t, err)
		_, err = app.Await(ctx, o.OrderID)
		require.NoError(t, err)
	}
	awaitQuiet(t, ctx, store)
	ok, err := checkLedgers(ctx, store, app)
	require.NoError(t, err)
	require.Empty(t, ok, "a run's money and stock match its orders")

	// A charge without a confirmed order, and stock reserved for the
	// declined order after its release, as a lost refund and a lost
	// release would leave.
	_, err = store.Append(ctx, PaymentStream("o-2"), events.AnyVersion, events.Event{Data: PaymentCharged{OrderID: "o-2", CustomerID: "bob", Cents: 900}})
	require.NoError(t, err)
	_, err = store.Append(ctx, StockStream("tea"), events.AnyVersion, events.Event{Data: StockReserved{OrderID: "o-2", SKU: "tea", Qty: 2}})
	require.NoError(t, err)
	awaitQuiet(t, ctx, store)
	off, err := checkLedgers(ctx, store, app)
	require.NoError(t, err)
	require.Equal(t, []string{
		"money of bob: cancelled order o-2 keeps 900 charged (a refund lost)",
		"money of bob: charged 900 - refunded 0 = 900, confirmed orders 0",
		"stock of tea: 2 on hand, restocked 5 - confirmed orders 1 = 4",
		"stock of tea: cancelled order o-2 keeps 2 reserved (a release lost)",
		"stock of tea: o-2 reserved 2 times",
	}, off)
}

// TestLedgerCheckFindsStockAppliedTwice: a release or a reservation
// applied a second time leaves the Inventory aggregate's map of
// reservations as it was (the second overwrites or deletes nothing), but
// the shelf off by the order's quantity; the check says which order, and
// when the shelf went below zero.
func TestLedgerCheckFindsStockAppliedTwice(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		again events.Event
		want  []string
	}{
		"release": {
			again: events.Event{Data: StockReleased{OrderID: "o-2", SKU: "tea", Qty: 2}},
			want: []string{
				"stock of tea: 4 on hand, restocked 5 - confirmed orders 3 = 2",
				"stock of tea: o-2 released 2 times",
			},
		},
		"reservation": {
			again: events.Event{Data: StockReserved{OrderID: "o-1", SKU: "tea", Qty: 3}},
			want: []string{
				"stock of tea: -1 on hand after reserving 3 for o-1",
				"stock of tea: -1 on hand, restocked 5 - confirmed orders 3 = 2",
				"stock of tea: o-1 reserved 2 times",
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			store, app := startTeaShop(t)
			for _, o := range []PlaceOrder{
				{OrderID: "o-1", CustomerID: "ada", SKU: "tea", Qty: 3, Card: CardOK},
				{OrderID: "o-2", CustomerID: "bob", SKU: "tea", Qty: 2, Card: CardDeclined},
			} {
				_, err := app.Place(ctx, o)
				require.NoError(t, err)
				_, err = app.Await(ctx, o.OrderID)
				require.NoError(t, err)
			}
			awaitQuiet(t, ctx, store)
			ok, err := checkLedgers(ctx, store, app)
			require.NoError(t, err)
			require.Empty(t, ok)

			_, err = store.Append(ctx, StockStream("tea"), events.AnyVersion, tc.again)
			require.NoError(t, err)
			awaitQuiet(t, ctx, store)
			off, err := checkLedgers(ctx, store, app)
			require.NoError(t, err)
			require.Equal(t, tc.want, off)
		})
	}
}

// TestLedgerCheckFindsEachLossAndDuplicate: in a random demo run's
// history, every kind of lost or repeated reservation, release, charge or
// refund, of any order, shows in the ledger check, naming the order; the
// clean history, and one where a cancelled order was charged and then
// refunded, pass.
func TestLedgerCheckFindsEachLossAndDuplicate(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	ctx := context.Background()
	store, err := memstore.New(&memstore.Config{Registry: NewRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	sum, err := RunDemo(ctx, store, &DemoConfig{
		Orders: 60, Customers: 8, Seed: seed, Lag: -1, PaymentTimeout: 300 * time.Millisecond,
		DeclineRate: 0.2, NoAnswerRate: 0.05,
	})
	require.NoError(t, err, "seed %d: %v", seed, sum.Ledgers)
	hist := ledgerHistory(ctx, t, store)
	require.Empty(t, replayLedgers(ctx, t, hist), "seed %d: the run's history", seed)

	status := map[string]string{} // by order id
	paid := map[string]bool{}     // by order id
	for _, h := range hist {
		switch e := h.data.(type) {
		case OrderConfirmed:
			status[e.OrderID] = StatusConfirmed
		case OrderCancelled:
			status[e.OrderID] = StatusCancelled
		case PaymentCharged:
			paid[e.OrderID] = true
		}
	}
	// refunded: a cancelled order never charged, charged and refunded
	// instead (as a payment timeout racing the charge leaves it), which
	// the check accepts.
	refunded := func() ([]ledgerEvent, int, string) {
		i := pick(t, rng, hist, func(e any) bool {
			p, ok := e.(OrderPlaced)
			return ok && status[p.OrderID] == StatusCancelled && !paid[p.OrderID]
		})
		p := dataAt[OrderPlaced](t, hist, i)
		out := insertAfter(rng, hist, i, ledgerEvent{PaymentStream(p.OrderID), PaymentCharged{OrderID: p.OrderID, CustomerID: p.CustomerID, Cents: p.Cents}})
		charge := slices.IndexFunc(out, func(h ledgerEvent) bool {
			c, ok := h.data.(PaymentCharged)
			return ok && c.OrderID == p.OrderID
		})
		out = insertAfter(rng, out, charge, ledgerEvent{PaymentStream(p.OrderID), PaymentRefunded{OrderID: p.OrderID, CustomerID: p.CustomerID, Cents: p.Cents}})
		require.Empty(t, replayLedgers(ctx, t, out), "seed %d: %s charged and refunded", seed, p.OrderID)
		refund := slices.IndexFunc(out, func(h ledgerEvent) bool {
			r, ok := h.data.(PaymentRefunded)
			return ok && r.OrderID == p.OrderID
		})
		return out, refund, p.OrderID
	}
	// Each fault returns the history with it, the order it is about, and
	// what the check must say about that order. They run in this order,
	// so the seed repeats them.
	faults := []struct {
		name string
		make func() ([]ledgerEvent, string, string)
	}{
		{"reservation twice", func() ([]ledgerEvent, string, string) {
			i := pick(t, rng, hist, is[StockReserved])
			id := dataAt[StockReserved](t, hist, i).OrderID
			return insertAfter(rng, hist, i, hist[i]), id, id + " reserved 2 times"
		}},
		{"reservation lost", func() ([]ledgerEvent, string, string) {
			i := pick(t, rng, hist, is[StockReserved])
			id := dataAt[StockReserved](t, hist, i).OrderID
			want := id + " released while nothing was reserved for it"
			if status[id] == StatusConfirmed {
				want = "confirmed order " + id + " has nothing reserved"
			}
			return slices.Delete(slices.Clone(hist), i, i+1), id, want
		}},
		{"release twice", func() ([]ledgerEvent, string, string) {
			i := pick(t, rng, hist, is[StockReleased])
			id := dataAt[StockReleased](t, hist, i).OrderID
			return insertAfter(rng, hist, i, hist[i]), id, id + " released 2 times"
		}},
		{"release lost", func() ([]ledgerEvent, string, string) {
			i := pick(t, rng, hist, is[StockReleased])
			r := dataAt[StockReleased](t, hist, i)
			return slices.Delete(slices.Clone(hist), i, i+1), r.OrderID, fmt.Sprintf("cancelled order %s keeps %d reserved", r.OrderID, r.Qty)
		}},
		{"release of a confirmed order", func() ([]ledgerEvent, string, string) {
			i := pick(t, rng, hist, func(e any) bool {
				r, ok := e.(StockReserved)
				return ok && status[r.OrderID] == StatusConfirmed
			})
			r := dataAt[StockReserved](t, hist, i)
			return insertAfter(rng, hist, i, ledgerEvent{hist[i].stream, StockReleased(r)}), r.OrderID, "confirmed order " + r.OrderID + " had its reservation released"
		}},
		{"charge twice", func() ([]ledgerEvent, string, string) {
			i := pick(t, rng, hist, is[PaymentCharged])
			id := dataAt[PaymentCharged](t, hist, i).OrderID
			return insertAfter(rng, hist, i, hist[i]), id, id + " charged 2 times"
		}},
		{"charge lost", func() ([]ledgerEvent, string, string) {
			i := pick(t, rng, hist, is[PaymentCharged])
			id := dataAt[PaymentCharged](t, hist, i).OrderID
			want := id + " refunded while nothing was charged"
			if status[id] == StatusConfirmed {
				want = "confirmed order " + id + " was not charged"
			}
			return slices.Delete(slices.Clone(hist), i, i+1), id, want
		}},
		{"refund twice", func() ([]ledgerEvent, string, string) {
			h, i, id := refunded()
			return insertAfter(rng, h, i, h[i]), id, id + " refunded 2 times"
		}},
		{"refund lost", func() ([]ledgerEvent, string, string) {
			h, i, id := refunded()
			return slices.Delete(h, i, i+1), id, "cancelled order " + id + " keeps"
		}},
		{"refund of nothing charged", func() ([]ledgerEvent, string, string) {
			i := pick(t, rng, hist, func(e any) bool {
				c, ok := e.(OrderCancelled)
				return ok && !paid[c.OrderID]
			})
			c := dataAt[OrderCancelled](t, hist, i)
			return insertAfter(rng, hist, i, ledgerEvent{PaymentStream(c.OrderID), PaymentRefunded{OrderID: c.OrderID, CustomerID: c.CustomerID, Cents: 100}}),
				c.OrderID, c.OrderID + " refunded while nothing was charged"
		}},
	}
	for _, f := range faults {
		// Made here, in order, so the seed repeats them; checked in
		// parallel.
		h, id, want := f.make()
		t.Run(strings.ReplaceAll(f.name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			off := replayLedgers(ctx, t, h)
			t.Logf("%s of %s: %q", f.name, id, off)
			require.True(t, slices.ContainsFunc(off, func(l string) bool { return strings.Contains(l, want) }),
				"seed %d: %s of %s: want a line saying %q, got %q", seed, f.name, id, want, off)
		})
	}
}

// ledgerEvent is one event of a history the ledger check reads.
type ledgerEvent struct {
	stream string
	data   any
}

// dataAt returns the event at hist[i], which the caller picked as a T.
func dataAt[T any](t *testing.T, hist []ledgerEvent, i int) T {
	t.Helper()
	e, ok := hist[i].data.(T)
	require.True(t, ok, "event %d is a %T", i, hist[i].data)
	return e
}

func is[T any](e any) bool {
	_, ok := e.(T)
	return ok
}

// ledgerHistory returns the events of store the ledger check reads, in
// the order of the feed.
func ledgerHistory(ctx context.Context, t *testing.T, store converge.Store) []ledgerEvent {
	t.Helper()
	var out []ledgerEvent
	var after events.Token
	for {
		envs, err := store.ReadAll(ctx, after, 1000)
		require.NoError(t, err)
		if len(envs) == 0 {
			return out
		}
		for _, env := range envs {
			after = env.Token
			if ledgerStream(env.StreamID) {
				e, err := store.Registry().Decode(env)
				require.NoError(t, err)
				out = append(out, ledgerEvent{env.StreamID, e})
			}
		}
	}
}

// replayLedgers appends hist to a fresh store, runs the read models on it
// (no saga, no command handler: nothing reacts to the events), and returns
// what the ledger check says.
func replayLedgers(ctx context.Context, t *testing.T, hist []ledgerEvent) []string {
	t.Helper()
	store, err := memstore.New(&memstore.Config{Registry: NewRegistry()})
	require.NoError(t, err)
	defer func() { _ = store.Close() }()
	for _, h := range hist {
		_, err := store.Append(ctx, h.stream, events.AnyVersion, events.Event{Data: h.data})
		require.NoError(t, err)
	}
	client, err := converge.NewClient(store, &converge.Config{Projections: Projections(), Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.NoError(t, client.Start(ctx))
	defer func() { require.NoError(t, client.Stop(ctx)) }()
	head, err := store.Head(ctx)
	require.NoError(t, err)
	// Not quiesce: a consumer that has not started yet is not behind it.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := client.Tracker().Wait(wctx, head, OrderSummary, CustomerSpending, CustomerOrders)
	require.NoError(t, err)
	require.False(t, st.Stale, "the read models did not catch up with the history: %v behind", st.Lagging)
	off, err := checkLedgers(ctx, store, &App{client: client})
	require.NoError(t, err)
	return off
}

// pick returns the index of a random event of hist that match accepts.
func pick(t *testing.T, rng *rand.Rand, hist []ledgerEvent, match func(any) bool) int {
	t.Helper()
	var at []int
	for i, h := range hist {
		if match(h.data) {
			at = append(at, i)
		}
	}
	require.NotEmpty(t, at, "the run's history has no such event: raise the demo's orders or rates")
	return at[rng.IntN(len(at))]
}

// insertAfter returns hist with e at a random place after its i-th event.
func insertAfter(rng *rand.Rand, hist []ledgerEvent, i int, e ledgerEvent) []ledgerEvent {
	return slices.Insert(slices.Clone(hist), i+1+rng.IntN(len(hist)-i), e)
}

package orders_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/examples/orders"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/projections"
	"github.com/converge-es/converge/saga"
)

var stores = map[string]func(t *testing.T) converge.Store{
	"memory": func(t *testing.T) converge.Store {
		t.Helper()
		st, err := memstore.New(&memstore.Config{Registry: orders.NewRegistry()})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		return st
	},
	"postgres": func(t *testing.T) converge.Store {
		t.Helper()
		db := pgtest.New(t, &pgtest.Config{MaxConns: 20})
		st, err := pgstore.New(context.Background(), db.Pool, &pgstore.Config{Schema: db.Schema, Registry: orders.NewRegistry()})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		return st
	},
}

func forEachStore(t *testing.T, fn func(t *testing.T, store converge.Store)) {
	t.Helper()
	for name, mk := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, mk(t))
		})
	}
}

// start runs an app on store with tea and mugs in stock (no teapots).
func start(t *testing.T, store converge.Store, cfg *orders.Config) *orders.App {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	app, err := orders.NewApp(store, cfg)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, app.Start(ctx))
	t.Cleanup(func() { require.NoError(t, app.Stop(context.Background())) })
	for _, sku := range []string{"tea", "mug"} {
		_, err := app.Restock(ctx, sku, 100)
		require.NoError(t, err)
	}
	return app
}

func place(t *testing.T, app *orders.App, id, customer, sku string, qty int, card string) orders.Placed {
	t.Helper()
	p, err := app.Place(context.Background(), orders.PlaceOrder{OrderID: id, CustomerID: customer, SKU: sku, Qty: qty, Card: card})
	require.NoError(t, err)
	return p
}

func await(t *testing.T, app *orders.App, id string) orders.Summary {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := app.Await(ctx, id)
	require.NoError(t, err)
	return s
}

// state reads order id's fulfilment. t may be the CollectT of an
// EventuallyWithT condition.
func state(t require.TestingT, app *orders.App, id string) (saga.Info, orders.FulfilmentState) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	tl, err := app.Client().Sagas().Show(context.Background(), orders.Fulfilment, id)
	require.NoError(t, err)
	var st orders.FulfilmentState
	require.NoError(t, json.Unmarshal(tl.Info.State, &st))
	return tl.Info, st
}

// stockEvents returns the types of the events in a SKU's stream that
// concern order id. t may be the CollectT of an EventuallyWithT condition.
func stockEvents(t require.TestingT, store converge.Store, sku, id string) []string {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	envs, err := store.ReadStream(context.Background(), orders.StockStream(sku), 1, 10000)
	require.NoError(t, err)
	var out []string
	for _, e := range envs {
		var v struct {
			OrderID string `json:"order_id"`
		}
		require.NoError(t, json.Unmarshal(e.Payload, &v))
		if v.OrderID == id {
			out = append(out, e.Type)
		}
	}
	return out
}

func TestHappyPath(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		var updates atomic.Int64
		app := start(t, store, &orders.Config{OnUpdate: func(u projections.Update) {
			if u.Projection == orders.OrderSummary && u.Key == "o-1" {
				updates.Add(1)
			}
		}})
		p := place(t, app, "o-1", "ada", "tea", 3, orders.CardOK)
		require.EqualValues(t, 3*orders.Catalog["tea"], p.Cents)

		// The strong read model has the order the moment Place returns.
		list, err := app.List(context.Background(), "ada", "", 10)
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, "o-1", list[0].OrderID)

		s := await(t, app, "o-1")
		require.Equal(t, orders.StatusConfirmed, s.Status)
		require.GreaterOrEqual(t, updates.Load(), int64(2), "OnUpdate saw the order placed and confirmed")
		info, st := state(t, app, "o-1")
		require.Equal(t, saga.StatusCompleted, info.Status)
		require.Equal(t, orders.OutcomeConfirmed, st.Outcome)
		require.Equal(t, []string{"inventory.stock_reserved"}, stockEvents(t, store, "tea", "o-1"))

		// A read with the write's token is fresh.
		res, err := app.Get(context.Background(), "o-1", p.Token)
		require.NoError(t, err)
		require.False(t, res.Stale)
	})
}

func TestDeclinedPaymentIsCompensated(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		app := start(t, store, &orders.Config{})
		place(t, app, "o-2", "bob", "mug", 2, orders.CardDeclined)
		s := await(t, app, "o-2")
		require.Equal(t, orders.StatusCancelled, s.Status)
		require.Equal(t, "payment declined: card declined", s.Reason)
		info, st := state(t, app, "o-2")
		require.Equal(t, saga.StatusFailed, info.Status)
		require.Equal(t, orders.OutcomeDeclined, st.Outcome)
		// The reservation was released by the compensation.
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			assert.Len(c, stockEvents(c, store, "mug", "o-2"), 2)
		}, 30*time.Second, 5*time.Millisecond)
		require.Equal(t, []string{"inventory.stock_reserved", "inventory.stock_released"}, stockEvents(t, store, "mug", "o-2"))
	})
}

func TestOutOfStock(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		app := start(t, store, &orders.Config{})
		place(t, app, "o-3", "cy", "teapot", 1, orders.CardOK)
		s := await(t, app, "o-3")
		require.Equal(t, orders.StatusCancelled, s.Status)
		require.Equal(t, "out of stock: 0 of teapot left, 1 ordered", s.Reason)
		_, st := state(t, app, "o-3")
		require.Equal(t, orders.OutcomeOutOfStock, st.Outcome)
	})
}

func TestCreditLimit(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		app := start(t, store, &orders.Config{CreditLimitCents: 2000})
		place(t, app, "o-4", "dee", "mug", 2, orders.CardOK) // 1780
		require.Equal(t, orders.StatusConfirmed, await(t, app, "o-4").Status)
		// await returned once order_summary showed o-4 confirmed, so the
		// check reads a total that includes it (a summary still behind is
		// TestCreditCheckWaitsForThePreviousConfirmation's case).
		place(t, app, "o-5", "dee", "tea", 1, orders.CardOK) // 450
		s := await(t, app, "o-5")
		require.Equal(t, orders.StatusCancelled, s.Status)
		require.Contains(t, s.Reason, "credit limit")
		_, st := state(t, app, "o-5")
		require.EqualValues(t, 1780, st.ConfirmedBefore)
	})
}

func TestPaymentTimeout(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		app := start(t, store, &orders.Config{PaymentTimeout: 300 * time.Millisecond})
		place(t, app, "o-6", "eve", "tea", 1, orders.CardNoAnswer)
		s := await(t, app, "o-6")
		require.Equal(t, orders.StatusCancelled, s.Status)
		require.Equal(t, "payment timed out", s.Reason)
		_, st := state(t, app, "o-6")
		require.Equal(t, orders.OutcomeTimedOut, st.Outcome)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			assert.Len(c, stockEvents(c, store, "tea", "o-6"), 2)
		}, 30*time.Second, 5*time.Millisecond, "the stock is released")
		// Nothing was charged, so the refund voided the payment instead:
		// a charge that came late would be refused. The refund has a
		// handler of its own, which may run after the stock's.
		var envs []events.Envelope
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			var err error
			envs, err = store.ReadStream(context.Background(), orders.PaymentStream("o-6"), 1, 10)
			require.NoError(c, err)
			assert.NotEmpty(c, envs)
		}, 30*time.Second, 5*time.Millisecond, "the refund is handled")
		require.Len(t, envs, 1)
		require.Equal(t, "payments.payment_voided", envs[0].Type)
	})
}

// gate holds messages until released.
type gate struct {
	mu   sync.Mutex
	open chan struct{}
}

func newGate() *gate { return &gate{open: make(chan struct{})} }

func (g *gate) wait(ctx context.Context) error {
	g.mu.Lock()
	ch := g.open
	g.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *gate) release() { close(g.open) }

// TestPausedReadModelParksTheGatedStep: while order_summary is paused, a new
// order's credit check (which reads it) parks, an order already past that
// step completes meanwhile, and the parked step runs on caught-up data
// once the read model resumes.
func TestPausedReadModelParksTheGatedStep(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		// The charge of order "early" is held before its handler's unit
		// begins, so the order waits past its credit check.
		charge := newGate()
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
		require.NoError(t, err)
		router.AddMiddleware(middleware.Recoverer, func(h message.HandlerFunc) message.HandlerFunc {
			return func(msg *message.Message) ([]*message.Message, error) {
				if message.HandlerNameFromCtx(msg.Context()) == "charge-payment" {
					if feed.UnitIndex(msg.Context()) > 0 {
						return nil, feed.ErrCut // wait at a unit's head, where no transaction is open
					}
					if err := charge.wait(msg.Context()); err != nil {
						return nil, err
					}
				}
				return h(msg)
			}
		})
		summary := newGate()
		var paused sync.Mutex
		pausing := false
		app := start(t, store, &orders.Config{
			Router: router,
			BeforeApply: func(ctx context.Context, model string, _ events.Envelope) error {
				paused.Lock()
				p := pausing
				paused.Unlock()
				if p && model == orders.OrderSummary {
					return summary.wait(ctx)
				}
				return nil
			},
		})

		place(t, app, "early", "fay", "tea", 1, orders.CardOK)
		require.Eventually(t, func() bool {
			tl, err := app.Client().Sagas().Show(ctx, orders.Fulfilment, "early")
			return err == nil && hasCommand(tl, orders.ChargePaymentType)
		}, 30*time.Second, 5*time.Millisecond, "early passes its credit check and asks for payment")

		paused.Lock()
		pausing = true
		paused.Unlock()
		place(t, app, "late", "gus", "mug", 1, orders.CardOK)
		require.Eventually(t, func() bool {
			tl, err := app.Client().Sagas().Show(ctx, orders.Fulfilment, "late")
			return err == nil && tl.Info.Status == saga.StatusParked
		}, 30*time.Second, 5*time.Millisecond, "late's credit check parks: order_summary has not seen it")

		charge.release()
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			info, _ := state(c, app, "early")
			assert.Equal(c, saga.StatusCompleted, info.Status)
		}, 30*time.Second, 5*time.Millisecond, "early completes while late is parked")
		info, _ := state(t, app, "late")
		require.Equal(t, saga.StatusParked, info.Status)
		require.Equal(t, []string{orders.OrderSummary}, info.Waiting)

		summary.release()
		s := await(t, app, "late")
		require.Equal(t, orders.StatusConfirmed, s.Status)
		tl, err := app.Client().Sagas().Show(ctx, orders.Fulfilment, "late")
		require.NoError(t, err)
		var kinds []string
		for _, h := range tl.History {
			kinds = append(kinds, h.Kind)
		}
		require.Subset(t, kinds, []string{saga.KindParked, saga.KindResumed})
		require.Positive(t, app.Client().GateStats().Behind, "the gate found order_summary behind")
	})
}

func hasCommand(tl saga.Timeline, typ string) bool {
	for _, h := range tl.History {
		if h.Kind == saga.KindCommandSent && h.EventType == typ {
			return true
		}
	}
	return false
}

// TestCreditCheckWaitsForThePreviousConfirmation: the customer's first
// order is confirmed, but order_summary has not applied the confirmation
// yet when the second order's credit check comes. Read then, the summary
// would show nothing confirmed and approve an order over the limit; the
// gated check instead parks, waiting for order_summary (not failing and
// retrying), until the summary has caught up with everything before the
// second order, and refuses it. (The handler's own check that the order
// is in the summary would also hold an ungated step back here, as the
// summary applies events in order, but by failed attempts.)
func TestCreditCheckWaitsForThePreviousConfirmation(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		release := make(chan struct{})
		var once sync.Once
		t.Cleanup(func() { once.Do(func() { close(release) }) })
		hold := func(ctx context.Context, readModel string, env events.Envelope) error {
			if readModel != orders.OrderSummary || env.Type != "orders.order_confirmed" || env.StreamID != orders.OrderStream("o-7") {
				return nil
			}
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		app := start(t, store, &orders.Config{CreditLimitCents: 2000, BeforeApply: hold})
		place(t, app, "o-7", "fay", "mug", 2, orders.CardOK) // 1780
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			envs, err := store.ReadStream(context.Background(), orders.OrderStream("o-7"), 1, 10)
			require.NoError(c, err)
			assert.True(c, slices.ContainsFunc(envs, func(e events.Envelope) bool { return e.Type == "orders.order_confirmed" }), "events %v", envs)
		}, 30*time.Second, 5*time.Millisecond, "o-7 is confirmed; the summary does not show it yet")

		place(t, app, "o-8", "fay", "tea", 1, orders.CardOK) // 450: over the limit with o-7
		require.Eventually(t, func() bool {
			tl, err := app.Client().Sagas().Show(context.Background(), orders.Fulfilment, "o-8")
			return err == nil && tl.Info.Status == saga.StatusParked && slices.Equal(tl.Info.Waiting, []string{orders.OrderSummary})
		}, 30*time.Second, 5*time.Millisecond, "the credit check waits for the summary, not for a retry")
		once.Do(func() { close(release) })

		s := await(t, app, "o-8")
		require.Equal(t, orders.StatusCancelled, s.Status)
		require.Contains(t, s.Reason, "credit limit")
		_, st := state(t, app, "o-8")
		require.EqualValues(t, 1780, st.ConfirmedBefore, "the check saw o-7's confirmation")
	})
}

// TestCreditLimitCountsOrdersInFlight: the credit check counts the
// customer's open orders placed before the order it checks, and only
// those. Two orders are placed back to back, the first left open (its
// payment is never answered): the first passes whenever it fits alone,
// though the summary may have the second by the time it is checked; the
// second is refused when the two together exceed the limit, though
// nothing is confirmed yet, and passes when they fit. Over random limits
// and amounts.
func TestCreditLimitCountsOrdersInFlight(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(seed, 20))
		limit := 2000 + rng.Int64N(6000)
		app := start(t, store, &orders.Config{CreditLimitCents: limit, PaymentTimeout: time.Hour})
		for _, sku := range []string{"tea", "mug"} {
			_, err := app.Restock(ctx, sku, 10_000)
			require.NoError(t, err)
		}
		skus := []string{"tea", "mug"}
		// upTo draws an order of at most most cents (at least a tea's).
		upTo := func(most int64) (string, int, int64) {
			sku := skus[rng.IntN(len(skus))]
			if orders.Catalog[sku] > most {
				sku = "tea"
			}
			qty := 1 + rng.IntN(int(most/orders.Catalog[sku]))
			return sku, qty, orders.Catalog[sku] * int64(qty)
		}
		// over draws an order of more than least cents.
		over := func(least int64) (string, int, int64) {
			sku := skus[rng.IntN(len(skus))]
			qty := int(least/orders.Catalog[sku]) + 1 + rng.IntN(3)
			return sku, qty, orders.Catalog[sku] * int64(qty)
		}
		type pair struct {
			first, second string
			cents         [2]int64
			fit           bool
		}
		var pairs []pair
		for i := range 8 {
			p := pair{first: fmt.Sprintf("o-%d-a", i), second: fmt.Sprintf("o-%d-b", i), fit: i%2 == 0}
			cust := fmt.Sprintf("cust-%d", i)
			var sku [2]string
			var qty [2]int
			if p.fit {
				sku[0], qty[0], p.cents[0] = upTo(limit - orders.Catalog["tea"])
				sku[1], qty[1], p.cents[1] = upTo(limit - p.cents[0])
			} else {
				sku[0], qty[0], p.cents[0] = upTo(limit)
				sku[1], qty[1], p.cents[1] = over(limit - p.cents[0])
			}
			place(t, app, p.first, cust, sku[0], qty[0], orders.CardNoAnswer)
			place(t, app, p.second, cust, sku[1], qty[1], orders.CardOK)
			pairs = append(pairs, p)
		}
		for _, p := range pairs {
			var tl saga.Timeline
			require.Eventually(t, func() bool {
				var err error
				tl, err = app.Client().Sagas().Show(ctx, orders.Fulfilment, p.first)
				return err == nil && (hasCommand(tl, orders.ChargePaymentType) || tl.Info.Status == saga.StatusFailed)
			}, 30*time.Second, 5*time.Millisecond, "%s passes its credit check or is refused", p.first)
			require.True(t, hasCommand(tl, orders.ChargePaymentType),
				"%s of %d cents fits the limit of %d alone: %s %s", p.first, p.cents[0], limit, tl.Info.Status, tl.Info.Reason)
			require.Equal(t, saga.StatusRunning, tl.Info.Status, "%s waits for its payment", p.first)

			s := await(t, app, p.second)
			if p.fit {
				require.Equal(t, orders.StatusConfirmed, s.Status, "%d + %d cents fit %d: %s", p.cents[0], p.cents[1], limit, s.Reason)
				continue
			}
			require.Equal(t, orders.StatusCancelled, s.Status, "%d + %d cents exceed %d", p.cents[0], p.cents[1], limit)
			require.Contains(t, s.Reason, "credit limit")
		}
	})
}

// TestPlacingAgainIsIdempotent: placing an order again under its id (a
// client retrying after a lost answer) returns the first result and places
// nothing more; another order under the same id is refused.
func TestPlacingAgainIsIdempotent(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		app := start(t, store, &orders.Config{})
		order := orders.PlaceOrder{OrderID: "o-30", CustomerID: "hal", SKU: "tea", Qty: 1, Card: orders.CardOK}
		first, err := app.Place(ctx, order)
		require.NoError(t, err)
		again, err := app.Place(ctx, order)
		require.NoError(t, err, "a retry of the same order")
		require.Equal(t, first, again)
		envs, err := store.ReadStream(ctx, orders.OrderStream("o-30"), 1, 10)
		require.NoError(t, err)
		placed := 0
		for _, e := range envs {
			if e.Type == "orders.order_placed" {
				placed++
			}
		}
		require.Equal(t, 1, placed, "placed once")
		other := order
		other.Qty = 2
		_, err = app.Place(ctx, other)
		require.ErrorIs(t, err, events.ErrDuplicateEvent, "another order under the same id")
	})
}

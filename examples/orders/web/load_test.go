package web_test

import (
	"context"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/examples/orders"
	"github.com/converge-es/converge/examples/orders/web"
)

// countingOrders passes Place on to the service and keeps the ids, and
// ends the load once it has placed n orders.
type countingOrders struct {
	web.Orders
	n      int
	cancel context.CancelFunc

	mu  sync.Mutex
	ids []string
}

func (c *countingOrders) Place(ctx context.Context, cmd web.PlaceOrder) (string, events.Token, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.ids) == c.n {
		c.cancel()
		return "", events.Token{}, ctx.Err()
	}
	id, tok, err := c.Orders.Place(ctx, cmd)
	if err == nil {
		c.ids = append(c.ids, id)
	}
	return id, tok, err
}

// TestRunLoad_KeepsFlowingUnderTheDefaultCreditLimit: the simulated load
// `converge serve --demo-load` runs goes on being fulfilled for as long as
// it runs, with the order service's default credit limit (a cap on what a
// customer has confirmed, for good): no simulated order is ever refused
// for credit, however many are placed, and the page's customer c-1 is
// left alone.
func TestRunLoad_KeepsFlowingUnderTheDefaultCreditLimit(t *testing.T) {
	t.Parallel()
	ab := setupApp(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// 300 orders of RandomOrder's, about 5,800 cents each: customers
	// who kept ordering would each pass the 200,000 cents limit.
	load := &countingOrders{Orders: ab.app, n: 300, cancel: cancel}
	var failed []error
	require.NoError(t, web.RunLoad(ctx, load, &web.LoadConfig{Rate: 2000, OnError: func(err error) { failed = append(failed, err) }}))
	require.Empty(t, failed)
	require.Len(t, load.ids, load.n)

	for _, id := range load.ids {
		wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
		s, err := ab.app.Service().Await(wctx, id)
		wcancel()
		require.NoError(t, err)
		require.NotEqual(t, "c-1", s.CustomerID)
		if s.Status != orders.StatusConfirmed {
			require.Equal(t, "payment declined: card declined", s.Reason, "order %s of %s", id, s.CustomerID)
		}
	}
}

// TestLoadCustomersStayUnderTheDefaultCreditLimit: however RandomOrder
// draws them, a simulated customer's orders cannot add up to more than
// the default credit limit, so no catalog price makes the load refused.
func TestLoadCustomersStayUnderTheDefaultCreditLimit(t *testing.T) {
	t.Parallel()
	dearest := slices.Max(slices.Collect(maps.Values(orders.Catalog)))
	most := web.DefaultLoadOrdersPerCustomer * web.MaxRandomQty * dearest
	require.LessOrEqual(t, most, int64(orders.DefaultCreditLimitCents),
		"%d orders of %d × %d cents: lower DefaultLoadOrdersPerCustomer", web.DefaultLoadOrdersPerCustomer, web.MaxRandomQty, dearest)
}

// idleOrders refuses every order: RunLoad's rate checks need no shop.
type idleOrders struct{ web.Orders }

func (idleOrders) Place(ctx context.Context, _ web.PlaceOrder) (string, events.Token, error) {
	return "", events.Token{}, context.Canceled
}

// TestRunLoad_RateRange: RunLoad starts at any rate from MinLoadRate to
// 10000 a second, however small the wait between orders it makes (it
// must fit a time.Duration), and refuses any other rate with an error
// naming the range instead of panicking.
func TestRunLoad_RateRange(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	// Ended at once: RunLoad sets up its pace, then returns.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	run := func(rate float64) (err error) {
		require.NotPanics(t, func() { err = web.RunLoad(ctx, idleOrders{}, &web.LoadConfig{Rate: rate}) }, "rate %g", rate)
		return err
	}
	// Uniform over the orders of magnitude, where the bounds are.
	logUniform := func(lo, hi float64) float64 {
		return math.Exp(math.Log(lo) + rng.Float64()*(math.Log(hi)-math.Log(lo)))
	}
	for range 500 {
		rate := min(max(logUniform(web.MinLoadRate, 10_000), web.MinLoadRate), 10_000)
		require.NoError(t, run(rate), "rate %g", rate)
		for _, bad := range []float64{
			logUniform(math.SmallestNonzeroFloat64, web.MinLoadRate) * (1 - 1e-9), 10_000 * (1 + rng.Float64()),
			-logUniform(math.SmallestNonzeroFloat64, math.MaxFloat64), 0, math.NaN(), math.Inf(1),
		} {
			require.ErrorContains(t, run(bad), "use a rate from 1e-06 (web.MinLoadRate) to 10000", "rate %g", bad)
		}
	}
	require.NoError(t, run(web.MinLoadRate))
	require.NoError(t, run(10_000))
}

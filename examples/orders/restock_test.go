package orders_test

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/examples/orders"
)

// TestRestockIsBounded: Restock fills a shelf up to MaxOnHand and refuses
// more (MaxInt too, which wrapped the shelf's count to a negative that
// refused every reservation), saying the bound and what still fits;
// restocks racing for the last room cannot pass it together; and a shelf
// restocked past MaxInt before the bound stays full and keeps selling.
// Over random amounts.
func TestRestockIsBounded(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(seed, 30))
		app := start(t, store, &orders.Config{}) // tea: 100
		onHand := func(sku string) int {
			t.Helper()
			n, err := app.OnHand(ctx, sku)
			require.NoError(t, err)
			return n
		}
		refused := func(sku string, qty int, says string) {
			t.Helper()
			_, err := app.Restock(ctx, sku, qty)
			require.ErrorIs(t, err, orders.ErrInvalidOrder, "restock %d of %s", qty, sku)
			require.ErrorContains(t, err, strconv.Itoa(orders.MaxOnHand))
			require.ErrorContains(t, err, says)
		}

		for _, qty := range []int{math.MaxInt, orders.MaxOnHand + 1 + rng.IntN(math.MaxInt-orders.MaxOnHand)} {
			refused("tea", qty, "restock 1 to")
		}
		refused("tea", orders.MaxOnHand-100+1+rng.IntN(100), "restock at most "+strconv.Itoa(orders.MaxOnHand-100))
		require.Equal(t, 100, onHand("tea"), "a refused restock puts nothing on the shelf")

		_, err := app.Restock(ctx, "tea", orders.MaxOnHand-100)
		require.NoError(t, err, "filling the shelf up to the bound")
		require.Equal(t, orders.MaxOnHand, onHand("tea"))
		refused("tea", 1, "restock at most 0")
		qty := 1 + rng.IntN(100)
		require.Equal(t, orders.StatusConfirmed, await(t, app, place(t, app, "o-1", "ada", "tea", qty, orders.CardOK).OrderID).Status)
		refused("tea", qty+1, "restock at most "+strconv.Itoa(qty))
		_, err = app.Restock(ctx, "tea", qty)
		require.NoError(t, err, "restocking what was sold")
		require.Equal(t, orders.MaxOnHand, onHand("tea"))

		// Racers for the mug shelf's last room: each would fit alone, no
		// two together.
		room := orders.MaxOnHand - onHand("mug")
		_, err = app.Restock(ctx, "mug", room-10)
		require.NoError(t, err)
		qtys := make([]int, 2+rng.IntN(4))
		for i := range qtys {
			qtys[i] = 6 + rng.IntN(5)
		}
		var wg sync.WaitGroup
		errs := make([]error, len(qtys))
		for i, qty := range qtys {
			wg.Go(func() { _, errs[i] = app.Restock(ctx, "mug", qty) })
		}
		wg.Wait()
		passed := 0
		for _, err := range errs {
			if err == nil {
				passed++
				continue
			}
			require.ErrorIs(t, err, orders.ErrInvalidOrder, "a racer that does not fit is refused, not failed")
		}
		require.Equal(t, 1, passed, "of racing restocks of %v mugs into room for 10: %v", qtys, errors.Join(errs...))
		require.LessOrEqual(t, onHand("mug"), orders.MaxOnHand)

		// A shelf restocked past MaxInt before Restock was bounded.
		_, err = store.Append(ctx, orders.StockStream("mug"), events.AnyVersion, events.Event{Data: orders.StockAdded{SKU: "mug", Qty: math.MaxInt}})
		require.NoError(t, err)
		require.Equal(t, math.MaxInt, onHand("mug"), "the shelf stays full rather than wrapping")
		require.Equal(t, orders.StatusConfirmed, await(t, app, place(t, app, "o-2", "ada", "mug", 1, orders.CardOK).OrderID).Status)
	})
}

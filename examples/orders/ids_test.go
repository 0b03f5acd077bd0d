package orders_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/examples/orders"
)

// TestCustomerIDsKeepTheirOrdersApart: a customer's list holds its own
// orders and no one else's, whatever ids customers have. An id that could
// make its orders' keys extend another customer's ("c" and "c/x") or look
// like another's ("c" and "c ") is refused, with an error naming the
// field, and so are control characters; letters (any script), digits and
// the usual punctuation of ids are taken. Over random ids, which come in
// families: a base, and the base extended after a separator.
func TestCustomerIDsKeepTheirOrdersApart(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(seed, 2))
		app := start(t, store, &orders.Config{})
		taken := []string{"a", "b", "c", "Z", "é", "ж", "7", "-", "_", ".", "@", ":", "+"}
		refused := []string{"/", " ", "\t", "\x00", "\n", "\u2028"}
		word := func(n int) string {
			var b strings.Builder
			for range n {
				if rng.IntN(8) == 0 {
					b.WriteString(refused[rng.IntN(len(refused))])
				} else {
					b.WriteString(taken[rng.IntN(len(taken))])
				}
			}
			return b.String()
		}
		var ids []string
		for range 15 {
			base := word(1 + rng.IntN(3))
			sep := []string{"/", "/", "-", ".", " "}[rng.IntN(5)]
			ids = append(ids, base, base+sep+word(1+rng.IntN(3)))
		}
		ids = append(ids, "c", "c/x", "c/x/y") // the auditor's case, every run

		mine := map[string][]string{}
		for i, cust := range ids {
			id := fmt.Sprintf("o-%d", i)
			_, err := app.Place(ctx, orders.PlaceOrder{OrderID: id, CustomerID: cust, SKU: "tea", Qty: 1, Card: orders.CardOK})
			if strings.ContainsAny(cust, strings.Join(refused, "")) {
				require.ErrorIs(t, err, orders.ErrInvalidOrder, "customer %q", cust)
				require.ErrorContains(t, err, "customer_id")
				continue
			}
			require.NoError(t, err, "customer %q", cust)
			mine[cust] = append(mine[cust], id)
		}
		for _, cust := range ids {
			list, err := app.List(ctx, cust, "", 100)
			require.NoError(t, err)
			got := []string{}
			for _, s := range list {
				got = append(got, s.OrderID)
			}
			require.ElementsMatch(t, mine[cust], got, "the orders of customer %q", cust)
		}
	})
}

// TestOrderIDsFitEveryStreamTheyName: an order id as long as the longest
// stream id named after it ("payment-" and the id) allows is placed and
// confirmed like any other; a longer one is refused up front with an
// error naming the field, not cancelled later because the store refuses a
// stream id. Over random lengths either side of the bound.
func TestOrderIDsFitEveryStreamTheyName(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	longest := events.MaxStreamIDLength - max(len(orders.OrderStream("")), len(orders.PaymentStream("")))
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(seed, 6))
		app := start(t, store, &orders.Config{})
		const alnum = "abcdefghijklmnopqrstuvwxyz0123456789"
		for i, n := range []int{longest, 3 + rng.IntN(longest-2), longest + 1, longest + 2 + rng.IntN(100)} {
			id := []byte(fmt.Sprintf("%d-", i))
			for len(id) < n {
				id = append(id, alnum[rng.IntN(len(alnum))])
			}
			p, err := app.Place(ctx, orders.PlaceOrder{OrderID: string(id), CustomerID: "ada", SKU: "tea", Qty: 1, Card: orders.CardOK})
			if n > longest {
				require.ErrorIs(t, err, orders.ErrInvalidOrder, "an order id of %d bytes", n)
				require.ErrorContains(t, err, "order_id")
				continue
			}
			require.NoError(t, err, "an order id of %d bytes", n)
			s := await(t, app, p.OrderID)
			require.Equal(t, orders.StatusConfirmed, s.Status, "an order id of %d bytes: %s", n, s.Reason)
		}
	})
}

// TestGetOfAnIDNoOrderCanHaveIsNotFound: Get of an id Place refuses (empty,
// too long, with a character ids cannot hold) answers as for any order the
// summary does not have, ErrNotFound with the same status, where it failed
// with the read model's key error; as List answers such a customer "no
// orders". Over random ids.
func TestGetOfAnIDNoOrderCanHaveIsNotFound(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(seed, 8))
		app := start(t, store, &orders.Config{})
		p := place(t, app, "o-1", "ada", "tea", 1, orders.CardOK)
		await(t, app, p.OrderID)
		const alnum = "abcdefghijklmnopqrstuvwxyz0123456789"
		word := func(n int) string {
			b := make([]byte, n)
			for i := range b {
				b[i] = alnum[rng.IntN(len(alnum))]
			}
			return string(b)
		}
		bad := []string{"", "a\x00b", word(orders.MaxOrderIDLength + 1), word(orders.MaxOrderIDLength + 2 + rng.IntN(5000))}
		for range 10 {
			w := word(1 + rng.IntN(20))
			at := rng.IntN(len(w) + 1)
			bad = append(bad, w[:at]+[]string{"\x00", "/", " ", "\n", "\xff", "\u2028"}[rng.IntN(6)]+w[at:])
		}
		want, err := app.Get(ctx, "o-none", p.Token)
		require.ErrorIs(t, err, orders.ErrNotFound)
		for _, id := range bad {
			require.False(t, orders.ValidID(id, orders.MaxOrderIDLength), "%.20q", id)
			got, err := app.Get(ctx, id, p.Token)
			require.ErrorIs(t, err, orders.ErrNotFound, "Get(%.20q)", id)
			require.Equal(t, want.Stale, got.Stale, "Get(%.20q)", id)
			require.Equal(t, want.Target, got.Target, "Get(%.20q)", id)
			require.Equal(t, want.Lagging, got.Lagging, "Get(%.20q)", id)
			list, err := app.List(ctx, id, "", 10)
			require.NoError(t, err)
			require.Empty(t, list, "List(%.20q)", id)
		}
	})
}

package web_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/examples/orders"
	"github.com/converge-es/converge/examples/orders/web"
)

// TestPlaceOrder_IdempotencyKeyPlacesOnce: a POST /orders sent again with
// its Idempotency-Key (the card spelled otherwise, or not) is answered as
// the first one was, also once the order settled, and the store holds one
// OrderPlaced; the key with another order is a 422 that changes nothing;
// the key of one customer is another order for another customer; without
// a key every POST is a new order. Over random keys and orders.
func TestPlaceOrder_IdempotencyKeyPlacesOnce(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	forEachAppStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		rng := rand.New(rand.NewPCG(seed, 11))
		ab := setupAppOn(t, store, nil)
		customers := []string{"c-1", "c-2", "ada"}
		type keyed struct {
			order web.PlaceOrder
			key   string
			first response
		}
		var placed []keyed
		for i := range 6 {
			n := 1 + rng.IntN(web.MaxIdempotencyKeyLen)
			switch i { // the bounds, every run
			case 0:
				n = 1
			case 1:
				n = web.MaxIdempotencyKeyLen
			}
			key := randomKey(rng, n)
			order := randomKeyedOrder(rng, customers[rng.IntN(len(customers))])
			first := ab.do(t, http.MethodPost, "/orders", keyHeader(key), strings.NewReader(mustJSON(t, order)))
			require.Equal(t, http.StatusAccepted, first.status, "key %q: %s", key, first.body)
			id := as[string](t, first.json(t)["order_id"])
			for range 1 + rng.IntN(3) {
				again := order
				if rng.IntN(2) == 0 {
					again.Card = respell(rng, order.Card)
				}
				requireSameAnswer(t, first, ab.do(t, http.MethodPost, "/orders", keyHeader(key), strings.NewReader(mustJSON(t, again))), "key %q, card %q", key, again.Card)
			}
			stored := placedEvents(t, store, id)
			require.Len(t, stored, 1, "key %q placed once", key)

			other := otherOrder(rng, order)
			p := ab.do(t, http.MethodPost, "/orders", keyHeader(key), strings.NewReader(mustJSON(t, other))).problem(t, http.StatusUnprocessableEntity, web.ProblemIdempotencyKeyReused)
			require.Equal(t, web.HeaderIdempotencyKey, p["parameter"])
			require.Contains(t, p["detail"], "new order needs a new key")
			requireSameEvents(t, stored, placedEvents(t, store, id), "another order under key %q changed nothing", key)
			tok, err := events.ParseToken(first.header.Get(consistency.HeaderPosition))
			require.NoError(t, err)
			r := ab.get(t, "/orders/"+id, withPatientToken(tok))
			require.Equal(t, http.StatusOK, r.status, "body %s", r.body)
			require.Equal(t, order.SKU, r.json(t)["sku"], "the first order stands")
			require.EqualValues(t, order.Qty, r.json(t)["qty"])

			// Another customer's key: another order, placed once too.
			theirs := order
			theirs.CustomerID = order.CustomerID + "-x"
			r = ab.do(t, http.MethodPost, "/orders", keyHeader(key), strings.NewReader(mustJSON(t, theirs)))
			require.Equal(t, http.StatusAccepted, r.status, "body %s", r.body)
			theirID := as[string](t, r.json(t)["order_id"])
			require.NotEqual(t, id, theirID, "key %q of customers %s and %s", key, order.CustomerID, theirs.CustomerID)
			require.Len(t, placedEvents(t, store, theirID), 1)
			requireSameEvents(t, stored, placedEvents(t, store, id), "the other customer's order left this one alone")
			placed = append(placed, keyed{order: order, key: key, first: first})
		}
		// Settled, it is still the same order.
		k := placed[rng.IntN(len(placed))]
		id := as[string](t, k.first.json(t)["order_id"])
		_, err := ab.app.Service().Await(t.Context(), id)
		require.NoError(t, err)
		requireSameAnswer(t, k.first, ab.do(t, http.MethodPost, "/orders", keyHeader(k.key), strings.NewReader(mustJSON(t, k.order))), "after the order settled")
		require.Len(t, placedEvents(t, store, id), 1)

		// Without a key, the same body twice is two orders.
		id1, _ := ab.placeOrder(t, k.order)
		id2, _ := ab.placeOrder(t, k.order)
		require.NotEqual(t, id1, id2)
	})
}

// TestPlaceOrder_ConcurrentRetriesPlaceOneOrder: requests racing with
// one Idempotency-Key place one order. With the same body every one is
// answered 202 with that order; with two bodies, one of them is placed and
// each request is answered by whether it sent that one (202) or not (422).
func TestPlaceOrder_ConcurrentRetriesPlaceOneOrder(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	forEachAppStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		rng := rand.New(rand.NewPCG(seed, 12))
		ab := setupAppOn(t, store, nil)
		const n = 8
		for round := range 4 {
			key := randomKey(rng, 1+rng.IntN(web.MaxIdempotencyKeyLen))
			order := randomKeyedOrder(rng, "racer")
			bodies := []string{mustJSON(t, order)}
			if round%2 == 1 {
				bodies = append(bodies, mustJSON(t, otherOrder(rng, order)))
			}
			rs, errs := make([]response, n), make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					<-start
					rs[i], errs[i] = tryDo(t.Context(), ab.bundle, http.MethodPost, "/orders", keyHeader(key), bodies[i%len(bodies)])
				})
			}
			close(start)
			wg.Wait()
			require.NoError(t, errors.Join(errs...))

			won := slices.IndexFunc(rs, func(r response) bool { return r.status == http.StatusAccepted })
			require.GreaterOrEqual(t, won, 0, "round %d: no request placed the order: %d %s", round, rs[0].status, rs[0].body)
			id := as[string](t, rs[won].json(t)["order_id"])
			stored := placedEvents(t, store, id)
			require.Len(t, stored, 1, "round %d: %d requests, one order", round, n)
			winner := bodies[won%len(bodies)] // the body whose order was placed
			for i, r := range rs {
				if bodies[i%len(bodies)] == winner {
					requireSameAnswer(t, rs[won], r, "round %d, request %d", round, i)
					continue
				}
				r.problem(t, http.StatusUnprocessableEntity, web.ProblemIdempotencyKeyReused)
			}
			var cmd web.PlaceOrder
			require.NoError(t, jsonUnmarshal([]byte(winner), &cmd))
			var ev orders.OrderPlaced
			require.NoError(t, jsonUnmarshal(stored[0].Payload, &ev))
			require.Equal(t, []any{cmd.SKU, cmd.Qty}, []any{ev.SKU, ev.Qty}, "round %d: the stored order is the one answered 202", round)
		}
	})
}

// TestPlaceOrder_RefusesBadIdempotencyKeys: a key that is empty, too long,
// not printable ASCII, holds a space or a ',', or comes in two headers is
// a 400 that says what a key is, and places nothing.
func TestPlaceOrder_RefusesBadIdempotencyKeys(t *testing.T) {
	t.Parallel()
	forEachAppStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ab := setupAppOn(t, store, nil)
		head, err := store.Head(t.Context())
		require.NoError(t, err)
		body := mustJSON(t, web.PlaceOrder{CustomerID: "c-1", SKU: "tea", Qty: 1, Card: orders.CardOK})
		for _, keys := range [][]string{
			{""},
			{strings.Repeat("k", web.MaxIdempotencyKeyLen+1)},
			{strings.Repeat("k", 5000)},
			{"my key"},
			{"my\tkey"},
			{"clé"},
			{"key\xff"},
			{"a,b"},
			{"k-1", "k-2"},
			{"k-1", "k-1"},
		} {
			r := ab.do(t, http.MethodPost, "/orders", keyHeader(keys...), strings.NewReader(body))
			p := r.problem(t, http.StatusBadRequest, web.ProblemInvalidParameter)
			require.Equal(t, web.HeaderIdempotencyKey, p["parameter"], "keys %q", keys)
			require.Contains(t, p["detail"], fmt.Sprintf("1 to %d printable ASCII characters", web.MaxIdempotencyKeyLen), "keys %q", keys)
			value, _ := p["value"].(string)
			require.LessOrEqual(t, len(value), 128+len("…"), "the echo is bounded")
		}
		after, err := store.Head(t.Context())
		require.NoError(t, err)
		require.Equal(t, head, after, "nothing appended")
		list, _, err := ab.app.List(t.Context(), "c-1", web.PageQuery{Limit: 10})
		require.NoError(t, err)
		require.Empty(t, list)
	})
}

// TestIdempotencyKey_AdvisedAndAllowed: the 503 of a request that ended
// unanswered says a POST is safe to retry with its key only, and a page
// of an allowed origin may send the key.
func TestIdempotencyKey_AdvisedAndAllowed(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *web.Config) { c.AllowedOrigins = []string{"https://shop.example"} })
	b.orders.placeErr = fmt.Errorf("append order: %w", context.Canceled)
	body := mustJSON(t, web.PlaceOrder{CustomerID: "c-1", SKU: "tea", Qty: 1, Card: orders.CardOK})
	p := b.do(t, http.MethodPost, "/orders", keyHeader("k-1"), strings.NewReader(body)).problem(t, http.StatusServiceUnavailable, "about:blank")
	require.Contains(t, p["detail"], "safe to retry only with the same Idempotency-Key")

	pre := b.do(t, http.MethodOptions, "/orders", http.Header{
		"Origin": {"https://shop.example"}, "Access-Control-Request-Method": {"POST"},
		"Access-Control-Request-Headers": {"content-type, idempotency-key"},
	}, nil)
	require.Equal(t, http.StatusNoContent, pre.status)
	require.Contains(t, pre.header.Get("Access-Control-Allow-Headers"), web.HeaderIdempotencyKey)
}

// keyHeader is jsonHeader with an Idempotency-Key header per key.
func keyHeader(keys ...string) http.Header {
	h := jsonHeader()
	h[web.HeaderIdempotencyKey] = keys
	return h
}

// keyChars are the characters of a valid key: printable ASCII but space
// and ','.
var keyChars = func() string {
	var b strings.Builder
	for c := byte('!'); c <= '~'; c++ {
		if c != ',' {
			b.WriteByte(c)
		}
	}
	return b.String()
}()

func randomKey(rng *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = keyChars[rng.IntN(len(keyChars))]
	}
	return string(b)
}

// randomKeyedOrder is a few units of a random product, paid with a card the
// gateway charges, its test card that it declines, or a card of the
// customer's own.
func randomKeyedOrder(rng *rand.Rand, customer string) web.PlaceOrder {
	skus := web.SKUs()
	return web.PlaceOrder{
		CustomerID: customer, SKU: skus[rng.IntN(len(skus))], Qty: 1 + rng.IntN(5),
		Card: []string{orders.CardOK, orders.CardDeclined, ownCard(rng, "")}[rng.IntN(3)],
	}
}

// ownCard is a random card number of 12 to 19 digits whose last four are
// not notLast4.
func ownCard(rng *rand.Rand, notLast4 string) string {
	for {
		digits := "5"
		for n := 12 + rng.IntN(8); len(digits) < n; {
			digits += string(rune('0' + rng.IntN(10)))
		}
		if digits[len(digits)-4:] != notLast4 {
			return digits
		}
	}
}

// otherOrder is o with another product, quantity or card (one whose last
// four digits differ: the domain keeps only those and a token).
func otherOrder(rng *rand.Rand, o web.PlaceOrder) web.PlaceOrder {
	switch rng.IntN(3) {
	case 0:
		skus := web.SKUs()
		for was := o.SKU; o.SKU == was; {
			o.SKU = skus[rng.IntN(len(skus))]
		}
	case 1:
		o.Qty = 1 + (o.Qty+rng.IntN(web.MaxQty-1))%web.MaxQty
	default:
		digits := strings.NewReplacer(" ", "", "-", "").Replace(o.Card)
		o.Card = ownCard(rng, digits[len(digits)-4:])
	}
	return o
}

// respell writes card's digits with spaces or '-' between random ones,
// within web.MaxCardLen.
func respell(rng *rand.Rand, card string) string {
	digits := strings.NewReplacer(" ", "", "-", "").Replace(card)
	var b strings.Builder
	for i, d := range digits {
		if sep := []string{"", " ", "-"}[rng.IntN(3)]; i > 0 && b.Len()+len(sep)+len(digits)-i <= web.MaxCardLen {
			b.WriteString(sep)
		}
		b.WriteRune(d)
	}
	return b.String()
}

// requireSameAnswer checks that again is the answer first was: the same
// status, body, token and Location.
func requireSameAnswer(t *testing.T, first, again response, msgAndArgs ...any) {
	t.Helper()
	require.Equal(t, first.status, again.status, msgAndArgs...)
	require.Equal(t, string(first.body), string(again.body), msgAndArgs...)
	for _, h := range []string{consistency.HeaderPosition, "Location"} {
		require.NotEmpty(t, first.header.Get(h), msgAndArgs...)
		require.Equal(t, first.header.Get(h), again.header.Get(h), msgAndArgs...)
	}
}

// placedEvents are the OrderPlaced events of order id's stream.
func placedEvents(t *testing.T, store converge.Store, id string) []events.Envelope {
	t.Helper()
	envs, err := store.ReadStream(t.Context(), orders.OrderStream(id), 1, 0)
	require.NoError(t, err)
	var out []events.Envelope
	for _, e := range envs {
		if e.Type == "orders.order_placed" {
			out = append(out, e)
		}
	}
	return out
}

// requireSameEvents checks that want and got are the same stored events.
func requireSameEvents(t *testing.T, want, got []events.Envelope, msgAndArgs ...any) {
	t.Helper()
	require.Len(t, got, len(want), msgAndArgs...)
	for i := range want {
		require.Equal(t, []any{want[i].ID, want[i].Token, want[i].Version}, []any{got[i].ID, got[i].Token, got[i].Version}, msgAndArgs...)
		require.JSONEq(t, string(want[i].Payload), string(got[i].Payload), msgAndArgs...)
	}
}

// tryDo is bundle.do for a goroutine other than the test's: it returns the
// error instead of failing the test.
func tryDo(ctx context.Context, b *bundle, method, path string, header http.Header, body string) (response, error) {
	req, err := http.NewRequestWithContext(ctx, method, b.url+path, strings.NewReader(body))
	if err != nil {
		return response{}, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	if _, err := io.Copy(&out, resp.Body); err != nil {
		return response{}, fmt.Errorf("read the body: %w", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: out.Bytes()}, nil
}

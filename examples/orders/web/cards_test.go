package web_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/examples/orders"
	"github.com/converge-es/converge/examples/orders/web"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestApp_CardNumbersAreNeitherStoredNorServed: a card number goes no
// further than placing the order. No row of any table of the database
// (events and commands, saga states and histories, read models) holds it,
// and no answer of the API or of the dashboard's (GET /api/sagas/{id}
// shows the commands the saga sent) shows it; the gateway still
// recognises a test card however it is spelled: "4000 0000 0000 0002" is
// declined. Over random card numbers and spellings.
func TestApp_CardNumbersAreNeitherStoredNorServed(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	ctx := context.Background()
	db := pgtest.New(t, &pgtest.Config{MaxConns: 10})
	store, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, Registry: orders.NewRegistry(), Logger: discardLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	ab := setupAppOn(t, store, func(c *web.AppConfig) { c.Orders.PaymentTimeout = 5 * time.Second })

	reasons := map[string]string{
		orders.CardDeclined: "payment declined: card declined",
		orders.CardNoAnswer: "payment timed out",
	}
	type order struct{ id, digits, typed, card string }
	var placed []order
	for i := range 8 {
		card := []string{orders.CardDeclined, orders.CardNoAnswer, orders.CardOK, ""}[i%4]
		digits := strings.ReplaceAll(card, "-", "")
		if card == "" { // a card of the customer's own: charged
			digits = "5"
			for n := 12 + rng.IntN(8); len(digits) < n; {
				digits += string(rune('0' + rng.IntN(10)))
			}
		}
		// The first four are spelled in groups of four with spaces, the
		// others with a random separator (or none) between any digits.
		var typed strings.Builder
		for j, d := range digits {
			switch {
			case j > 0 && i < 4 && j%4 == 0:
				typed.WriteByte(' ')
			case j > 0 && i >= 4:
				// Within MaxCardLen: the digits still to come need room.
				if sep := []string{"", " ", "-"}[rng.IntN(3)]; typed.Len()+len(sep)+len(digits)-j <= web.MaxCardLen {
					typed.WriteString(sep)
				}
			}
			typed.WriteRune(d)
		}
		id, _ := ab.placeOrder(t, web.PlaceOrder{CustomerID: "c-1", SKU: "tea", Qty: 1, Card: typed.String()})
		placed = append(placed, order{id: id, digits: digits, typed: typed.String(), card: card})
	}
	// All placed first, then awaited: the unanswered charges time out
	// together rather than one after the other.
	for _, o := range placed {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		s, err := ab.app.Service().Await(wctx, o.id)
		cancel()
		require.NoError(t, err)
		if want, ok := reasons[o.card]; ok {
			require.Equal(t, want, s.Reason, "card %q", o.typed)
		} else {
			require.Equal(t, orders.StatusConfirmed, s.Status, "card %q: %s", o.typed, s.Reason)
		}
	}

	var served strings.Builder
	paths := []string{"/orders?customer=c-1&limit=100", "/api/sagas?limit=500", "/api/sagas?status=failed", "/api/dead-letters"}
	for _, o := range placed {
		paths = append(paths, "/orders/"+o.id, "/api/sagas/"+o.id)
	}
	for _, p := range paths {
		r := ab.get(t, p, nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", p, r.body)
		fmt.Fprintf(&served, "%s %s\n", p, r.body)
	}
	require.Contains(t, served.String(), "command_sent", "the timelines show the commands sent")

	var stored strings.Builder
	rows, err := db.Pool.Query(ctx, `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_type = 'BASE TABLE'`, db.Schema)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.NotEmpty(t, tables)
	for _, table := range tables {
		rows, err := db.Pool.Query(ctx, "SELECT t::text FROM "+pgx.Identifier{db.Schema, table}.Sanitize()+" t")
		require.NoError(t, err)
		texts, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		for _, s := range texts {
			fmt.Fprintf(&stored, "%s %s\n", table, s)
		}
	}
	require.Contains(t, stored.String(), "orders.order_placed", "the dump holds the events")

	for _, o := range placed {
		for _, number := range []string{o.digits, o.typed} {
			require.NotContains(t, stored.String(), number, "the database holds card %q", o.typed)
			require.NotContains(t, served.String(), number, "the API shows card %q", o.typed)
		}
	}
	for _, card := range []string{orders.CardDeclined, orders.CardNoAnswer, orders.CardOK} {
		require.NotContains(t, stored.String(), card)
		require.NotContains(t, served.String(), card)
	}
}

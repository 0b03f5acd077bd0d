package orders_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/examples/orders"
	"github.com/converge-es/converge/projections"
)

// spell writes a card's digits as a customer might: in groups of four
// separated by spaces (when spaced), else with a random separator (none,
// a space or '-') between any two digits.
func spell(rng *rand.Rand, digits string, spaced bool) string {
	var b strings.Builder
	for i, d := range digits {
		if i > 0 {
			switch {
			case spaced && i%4 == 0:
				b.WriteByte(' ')
			case !spaced:
				b.WriteString([]string{"", "", " ", "-"}[rng.IntN(4)])
			}
		}
		b.WriteRune(d)
	}
	return b.String()
}

// storedText returns everything the app stored, as text: every event's
// payload and metadata, every fulfilment's state and history, and every
// read model's rows.
func storedText(t *testing.T, store converge.Store, app *orders.App, ids []string) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	var after events.Token
	for {
		envs, err := store.ReadAll(ctx, after, 500)
		require.NoError(t, err)
		if len(envs) == 0 {
			break
		}
		for _, e := range envs {
			md, err := json.Marshal(e.Metadata)
			require.NoError(t, err)
			fmt.Fprintf(&b, "%s %s %s %s\n", e.StreamID, e.Type, e.Payload, md)
			after = e.Token
		}
	}
	for _, id := range ids {
		tl, err := app.Client().Sagas().Show(ctx, orders.Fulfilment, id)
		require.NoError(t, err)
		j, err := json.Marshal(tl)
		require.NoError(t, err)
		b.Write(j)
	}
	for name, tables := range orders.Tables {
		for _, table := range tables {
			rows, err := app.Client().Projections().View(name).Table(table).List(ctx, &projections.ListOptions{Limit: 10_000})
			require.NoError(t, err)
			for _, r := range rows {
				fmt.Fprintf(&b, "%s.%s %s %s\n", name, table, r.Key, r.Value)
			}
		}
	}
	return b.String()
}

// TestCardNumbersStopAtPlace: the payment gateway recognises its test
// cards however their digits are separated ("4000 0000 0000 0002" is
// declined, as "4000-0000-0000-0002" is), any other card is charged, and
// no event, command, saga state, saga history or read-model row holds a
// card number: the order keeps the provider's token and the last four
// digits. Over random card numbers and spellings.
func TestCardNumbersStopAtPlace(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(seed, 3))
		app := start(t, store, &orders.Config{PaymentTimeout: 5 * time.Second})
		outcome := map[string]string{
			orders.CardDeclined: "payment declined: card declined",
			orders.CardNoAnswer: "payment timed out",
			orders.CardOK:       "",
		}
		type order struct{ id, digits, typed, reason string }
		var placed []order
		var ids []string
		for i := range 12 {
			card := []string{orders.CardDeclined, orders.CardNoAnswer, orders.CardOK, ""}[i%4]
			digits := strings.ReplaceAll(card, "-", "")
			if card == "" { // a card of the customer's own: charged
				n := 12 + rng.IntN(8) // card numbers have 12 to 19 digits
				digits = "5"
				for len(digits) < n {
					digits += string(rune('0' + rng.IntN(10)))
				}
			}
			o := order{id: fmt.Sprintf("o-%d", i), digits: digits, typed: spell(rng, digits, i < 4), reason: outcome[card]}
			place(t, app, o.id, "ada", "tea", 1, o.typed)
			placed = append(placed, o)
			ids = append(ids, o.id)
		}
		for _, o := range placed {
			s := await(t, app, o.id)
			if o.reason == "" {
				require.Equal(t, orders.StatusConfirmed, s.Status, "card %q: %s", o.typed, s.Reason)
			} else {
				require.Equal(t, o.reason, s.Reason, "card %q", o.typed)
			}
			envs, err := store.ReadStream(ctx, orders.OrderStream(o.id), 1, 1)
			require.NoError(t, err)
			var e map[string]any
			require.NoError(t, json.Unmarshal(envs[0].Payload, &e))
			require.Equal(t, o.digits[len(o.digits)-4:], e["card_last4"], "the order keeps the last four digits")
			require.NotEmpty(t, e["card_token"])
		}
		text := storedText(t, store, app, ids)
		require.Contains(t, text, "orders.order_placed", "the scan read the events")
		for _, o := range placed {
			for _, number := range []string{o.digits, o.typed} {
				require.NotContains(t, text, number, "card %q is stored", o.typed)
			}
		}
		for _, card := range []string{orders.CardDeclined, orders.CardNoAnswer, orders.CardOK} {
			require.NotContains(t, text, card)
		}
	})
}

// TestOrdersPlacedWithCardNumbersReadAsTokens: OrderPlaced events and
// ChargePayment commands stored while they held the card number (schema
// v1) read as the tokenized v2: the saga decides such an order by its
// token like any other, and keeps no number in its state or its commands.
func TestOrdersPlacedWithCardNumbersReadAsTokens(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		app := start(t, store, &orders.Config{})
		for id, card := range map[string]string{"old-1": orders.CardDeclined, "old-2": "4242 4242 4242 4242"} {
			payload := fmt.Sprintf(`{"order_id":%q,"customer_id":"ada","sku":"tea","qty":1,"cents":450,"card":%q}`, id, card)
			_, err := store.Append(ctx, orders.OrderStream(id), events.NoStream, events.Event{
				Data:     events.Raw{Type: "orders.order_placed", SchemaVersion: 1, Payload: json.RawMessage(payload)},
				Metadata: events.Metadata{CorrelationID: id},
			})
			require.NoError(t, err)
		}
		require.Equal(t, "payment declined: card declined", await(t, app, "old-1").Reason)
		require.Equal(t, orders.StatusConfirmed, await(t, app, "old-2").Status)
		for _, id := range []string{"old-1", "old-2"} {
			tl, err := app.Client().Sagas().Show(ctx, orders.Fulfilment, id)
			require.NoError(t, err)
			j, err := json.Marshal(tl)
			require.NoError(t, err)
			require.NotContains(t, string(j), "0000-0000", "the fulfilment of %s keeps no card number", id)
			require.NotContains(t, string(j), "4242 4242", "the fulfilment of %s keeps no card number", id)
			var st map[string]any
			require.NoError(t, json.Unmarshal(tl.Info.State, &st))
			require.NotEmpty(t, st["card_token"])
		}

		// A charge still on its way: decided by the token of its card.
		v1 := events.Envelope{
			Type: orders.ChargePaymentType, SchemaVersion: 1,
			Payload: json.RawMessage(`{"order_id":"old-3","customer_id":"ada","cents":450,"card":"4000 0000 0000 0119"}`),
		}
		c, err := orders.NewRegistry().Decode(v1)
		require.NoError(t, err)
		j, err := json.Marshal(c)
		require.NoError(t, err)
		require.JSONEq(t, `{"order_id":"old-3","customer_id":"ada","cents":450,"card_token":"tok_test_no_answer"}`, string(j))
	})
}

package orders

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

// TestLedgerCheckFindsMoneyAndStockOff: the demo's ledger check passes on
// a run's events, and reports a charge no confirmed order accounts for and
// stock left reserved for an order that was not confirmed, each once.
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
	require.NoError(t, quiesce(ctx, store))
	ok, err := checkLedgers(ctx, store, app)
	require.NoError(t, err)
	require.Empty(t, ok, "a run's money and stock match its orders")

	// A charge without a confirmed order, and stock reserved for the
	// declined order, as a lost refund and a lost release would leave.
	_, err = store.Append(ctx, PaymentStream("o-2"), events.AnyVersion, events.Event{Data: PaymentCharged{OrderID: "o-2", CustomerID: "bob", Cents: 900}})
	require.NoError(t, err)
	_, err = store.Append(ctx, StockStream("tea"), events.AnyVersion, events.Event{Data: StockReserved{OrderID: "o-2", SKU: "tea", Qty: 2}})
	require.NoError(t, err)
	require.NoError(t, quiesce(ctx, store))
	off, err := checkLedgers(ctx, store, app)
	require.NoError(t, err)
	require.Len(t, off, 2, "%v", off)
	require.True(t, strings.HasPrefix(off[0], "money of bob"), off[0])
	require.True(t, strings.HasPrefix(off[1], "stock of tea: 2 reserved for o-2"), off[1])
}

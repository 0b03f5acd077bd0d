package orders

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/projections"
)

// TestRebuildComparisonFindsDifferences: the demo's final check reports a
// read model that differs from its rebuild (here the rebuild's
// customer_spending counts charges twice) and nothing else.
func TestRebuildComparisonFindsDifferences(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, app := startTeaShop(t)
	var err error
	_, err = app.Place(ctx, PlaceOrder{OrderID: "o-1", CustomerID: "ada", SKU: "tea", Qty: 1, Card: CardOK})
	require.NoError(t, err)
	_, err = app.Await(ctx, "o-1")
	require.NoError(t, err)
	awaitQuiet(t, ctx, store)

	same, err := compareWithRebuild(ctx, store, app, Projections())
	require.NoError(t, err)
	require.Empty(t, same)

	double := projections.New(CustomerSpending, nil)
	projections.On(double, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e PaymentCharged) error {
		return tx.Table("customers").Put(ctx, e.CustomerID, Spending{ChargedCents: 2 * e.Cents, Payments: 1})
	})
	defs := Projections()
	defs[1] = double
	diffs, err := compareWithRebuild(ctx, store, app, defs)
	require.NoError(t, err)
	require.Len(t, diffs, 1)
	require.Contains(t, diffs[0], "customer_spending.customers[ada]")
}

// startTeaShop starts the app on a memory store with five units of tea in
// stock; both stop when the test ends.
func startTeaShop(t *testing.T) (*memstore.Store, *App) {
	t.Helper()
	ctx := context.Background()
	store, err := memstore.New(&memstore.Config{Registry: NewRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	app, err := NewApp(store, &Config{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.NoError(t, app.Start(ctx))
	t.Cleanup(func() { require.NoError(t, app.Stop(ctx)) })
	_, err = app.Restock(ctx, "tea", 5)
	require.NoError(t, err)
	return store, app
}

// awaitQuiet waits until every consumer has caught up with the feed.
func awaitQuiet(t *testing.T, ctx context.Context, store converge.Store) {
	t.Helper()
	behind, err := quiesce(ctx, store, time.Minute)
	require.NoError(t, err)
	require.Empty(t, behind, "consumers behind the feed")
}

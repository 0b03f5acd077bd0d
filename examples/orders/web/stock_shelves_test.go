package web_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/examples/orders/web"
)

// TestStockShelvesTopsUp: stocking the shelves again (a server started
// again on the same database) tops every product up to the level, rather
// than adding the level once more.
func TestStockShelvesTopsUp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ab := setupApp(t, nil) // stocks the shelves to 1000
	require.NoError(t, ab.app.StockShelves(ctx, 1000))
	require.NoError(t, ab.app.StockShelves(ctx, 400), "a lower level adds nothing")
	for _, sku := range web.SKUs() {
		have, err := ab.app.Service().OnHand(ctx, sku)
		require.NoError(t, err)
		require.Equal(t, 1000, have, sku)
	}
}

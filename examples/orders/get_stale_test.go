package orders_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/examples/orders"
)

// TestGetWhileSummaryBehind: as the README says, Get waits within ctx's
// deadline for order_summary to reach the token; while the summary has
// not seen the order the answer is ErrNotFound, flagged Stale (never a
// fresh "no such order"); once it has, the row, fresh.
func TestGetWhileSummaryBehind(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body, not a helper
		hold := make(chan struct{})
		app := start(t, store, &orders.Config{
			PaymentTimeout: time.Hour,
			BeforeApply: func(ctx context.Context, model string, _ events.Envelope) error {
				if model != orders.OrderSummary {
					return nil
				}
				select {
				case <-hold:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			},
		})
		p := place(t, app, "g-1", "ada", "tea", 1, orders.CardOK)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		start := time.Now()
		res, err := app.Get(ctx, "g-1", p.Token)
		cancel()
		t.Logf("behind: err=%v stale=%v waited=%s", err, res.Stale, time.Since(start))
		require.True(t, errors.Is(err, orders.ErrNotFound), "not in the summary yet: ErrNotFound, got %v", err)
		require.True(t, res.Stale, "and flagged stale")
		require.GreaterOrEqual(t, time.Since(start), 250*time.Millisecond, "it waited within the deadline")

		close(hold)
		ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res, err = app.Get(ctx, "g-1", p.Token)
		require.NoError(t, err)
		require.False(t, res.Stale)
		require.Equal(t, "g-1", res.Value.OrderID)
	})
}

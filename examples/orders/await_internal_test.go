package orders

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAwaitLeavesNothingRegistered: every Await removes the wake-up it
// registered when it returns, whether the order had settled already,
// settled while it waited, or the wait ran out; a server that awaits
// orders all day holds none of them afterwards.
func TestAwaitLeavesNothingRegistered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, app := startTeaShop(t)
	registered := func() int {
		app.mu.Lock()
		defer app.mu.Unlock()
		n := 0
		for _, chs := range app.waiters {
			n += len(chs)
		}
		return n
	}
	var wg sync.WaitGroup
	for i := range 5 {
		id := fmt.Sprintf("o-%d", i)
		_, err := app.Place(ctx, PlaceOrder{OrderID: id, CustomerID: "ada", SKU: "tea", Qty: 1, Card: CardOK})
		require.NoError(t, err)
		for range 20 { // while it settles, and after
			wg.Go(func() {
				s, err := app.Await(ctx, id)
				assert.NoError(t, err)
				assert.True(t, s.Terminal())
			})
		}
	}
	wg.Wait()
	for i := range 50 { // orders that never come: each wait runs out
		wctx, cancel := context.WithTimeout(ctx, time.Millisecond)
		_, err := app.Await(wctx, fmt.Sprintf("never-%d", i))
		cancel()
		require.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)
	}
	for range 50 { // settled before the call
		_, err := app.Await(ctx, "o-0")
		require.NoError(t, err)
	}
	require.Zero(t, registered(), "wake-ups left registered")
}

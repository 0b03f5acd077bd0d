package consistency_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
)

// TestShortWaitsBetweenTicksFindALostMove: push is healthy, a move's
// notification was lost, and the store holds the move. Clients keep
// reading with deadlines shorter than FallbackInterval, one wait between
// two ticks, so no tick sees a wait open: a wait that ended stale still
// has its name read at the next tick, and the wait after it is fresh.
func TestShortWaitsBetweenTicksFindALostMove(t *testing.T) {
	t.Parallel()
	pr := newFakePositions()
	pr.set("orders", tok(1))
	tr, tick := setupTicked(t, &consistency.TrackerConfig{
		Positions: pr, Watcher: &fakeWatcher{}, PushHealthy: func() bool { return true },
	})
	require.NoError(t, tr.Learn(t.Context(), "orders"))
	pr.set("orders", tok(5)) // committed; its notification lost

	stale := 0
	var last consistency.Status
	for i := range 10 {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Millisecond)
		st, err := tr.Wait(ctx, tok(5), "orders")
		cancel()
		require.NoError(t, err)
		if i > 0 && st.Stale {
			stale++
			last = st
		}
		tick()
	}
	require.Zero(t, stale, "%d of 9 waits, each after a tick that followed a wait on the name, read stale although the store holds %s; last: %+v", stale, tok(5), last)
}

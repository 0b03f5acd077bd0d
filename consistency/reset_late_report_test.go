package consistency_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
)

// TestTrackerLocalResetSurvivesALateReport: Reset exists so that the
// tracker does not "keep reporting the old position and label reads of
// the rebuilding read model fresh". A Watcher report of a move committed
// before the reset but delivered after it (PostgreSQL LISTEN delivers
// asynchronously, and the store re-announces every checkpoint's position,
// read before the reset committed, after a reconnect) must not undo it:
// the tracker stays at the reset position, and a wait for a token the
// rebuilding model has not reached is stale, as the store (Positions)
// says. The rebuild's own moves are still taken: once a read of the store
// confirms one, the tracker trusts the Watcher's reports again.
func TestTrackerLocalResetSurvivesALateReport(t *testing.T) {
	t.Parallel()
	positions := newFakePositions()
	w := &fakeWatcher{}
	tr := setup(t, &consistency.TrackerConfig{Positions: positions, Watcher: w, FallbackInterval: time.Hour})

	// The projection runs up to 100, announced by push.
	positions.set("orders", tok(100))
	w.push("orders", tok(100))
	pos, ok := tr.Position("orders")
	require.True(t, ok)
	require.Equal(t, tok(100), pos)

	// This process rewinds it to 10 (projections.Runner.Reset) ...
	positions.set("orders", tok(10))
	tr.Reset("orders", tok(10))
	// ... and its listener then hands over the move to 100, made before.
	w.push("orders", tok(100))
	pos, _ = tr.Position("orders")
	require.Equal(t, tok(10), pos, "a report of a move made before the reset undid it")

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	st, err := tr.Wait(ctx, tok(50), "orders")
	require.NoError(t, err)
	require.True(t, st.Stale, "the model was reset to 10 and the store says 10, yet a wait for 50 reads fresh (tracker at %s)", st.Checkpoint)

	// The rebuild moves the model to 60 and reports it: the tracker reads
	// the store, which confirms it, and the wait for 50 is answered.
	positions.set("orders", tok(60))
	w.push("orders", tok(60))
	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err = tr.Wait(ctx, tok(50), "orders")
	require.NoError(t, err)
	require.False(t, st.Stale, "the rebuild's move to 60, in the store, was never taken (tracker at %s)", st.Checkpoint)

	// Confirmed: the next report is taken as it comes, without a read.
	reads := positions.readsOf("orders")
	w.push("orders", tok(70))
	pos, _ = tr.Position("orders")
	require.Equal(t, tok(70), pos)
	require.Equal(t, reads, positions.readsOf("orders"), "a report after the confirmed one was read from the store")
}

package consistency_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
)

// TestAdvanceAtYieldsToAReset: an advance learned before a reset (a
// projection's generation switch, which advances after telling its
// listeners) is dropped when the name moved back since its epoch was
// read: by a Reset of the name, of a member of its group, or a regrouping.
// Applied, it undid the reset and answered waits fresh for events being
// applied again. Without a reset in between it advances as Advance does.
func TestAdvanceAtYieldsToAReset(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for round := range 200 {
		tr := setup(t, nil)
		tr.Group("g", "g#0/2", "g#1/2")
		tr.Advance("g#0/2", tok(10))
		tr.Advance("g#1/2", tok(10))
		tr.Advance("solo", tok(10))
		name := []string{"g", "solo"}[rng.IntN(2)]
		epoch := tr.Epoch(name)
		reset := rng.IntN(3)
		switch {
		case reset == 0: // none
		case name == "solo":
			tr.Reset("solo", tok(4))
		case reset == 1:
			tr.Reset("g#1/2", tok(4))
		default:
			tr.Group("g", "g#1/2", "g#0/2", "other")
		}
		advanced := tr.AdvanceAt(name, tok(30), epoch)
		require.Equal(t, reset == 0, advanced, "round %d: %s, reset %d", round, name, reset)
		pos, ok := tr.Position(name)
		switch {
		case reset == 0:
			require.True(t, ok)
			require.Equal(t, tok(30), pos, "round %d", round)
		case ok:
			require.True(t, pos.Before(tok(30)), "round %d: %s at %v after a reset", round, name, pos)
		}
	}
}

// TestAdvanceAtYieldsToAReportedResetBeingChecked: another process resets
// the read model and its Watcher reports the position behind the known
// one; while the store read that tells a reset from a late report is
// under way, a switch's AdvanceAt comes. It advanced (the epoch only moved
// once the read answered), and the read's answer, a move meanwhile, was
// then dropped: the tracker stayed ahead of the store, waits fresh for
// events being applied again.
func TestAdvanceAtYieldsToAReportedResetBeingChecked(t *testing.T) {
	t.Parallel()
	gp := newGatedPositions()
	gp.set("view", tok(10))
	w := &fakeWatcher{}
	tr := setup(t, &consistency.TrackerConfig{Positions: gp, Watcher: w})
	defer close(gp.release)

	tr.Advance("view", tok(10))
	epoch := tr.Epoch("view")
	gp.set("view", tok(4))
	w.push("view", tok(4))
	within(t, gp.started, "the report behind is read from the store")

	require.False(t, tr.AdvanceAt("view", tok(20), epoch), "an advance over a reported reset being checked")
	gp.release <- struct{}{}
	require.NoError(t, within(t, gp.ended, "the read answers"))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	st, err := tr.Wait(ctx, tok(15), "view")
	require.NoError(t, err)
	require.True(t, st.Stale, "the store says the model was reset to 4")
}

package consistency_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
)

// TestTracker_PushForAGroupNameLeavesItToItsMembers: a processor split
// into partitions keeps, in the store, the checkpoint it had under its own
// name before the split, no longer moving; after a reset of the
// partitions it lies ahead of them. The store announces every checkpoint
// again when it listens again (pgstore), so the Watcher reports that old
// row under the group's name. The group stands for its members: the
// report must neither move it past them nor make it known before them,
// or a token between the partitions and the old row reads fresh while a
// partition is still behind it. Positions, the partition count and the
// targets are random.
func TestTracker_PushForAGroupNameLeavesItToItsMembers(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 17))
	for round := range 40 {
		old := 50 + rng.IntN(100)
		n := 2 + rng.IntN(3)
		parts := make([]string, n)
		ps := newFakePositions()
		ps.set("orders", tok(uint64(old)))
		low := 0
		for i := range parts {
			parts[i] = fmt.Sprintf("orders#%d/%d", i, n)
			p := rng.IntN(old)
			ps.set(parts[i], tok(uint64(p)))
			if i == 0 || p < low {
				low = p
			}
		}
		w := &fakeWatcher{}
		tr := setup(t, &consistency.TrackerConfig{Positions: ps, Watcher: w, FallbackInterval: time.Hour})
		tr.Group("orders", parts...)

		if rng.IntN(2) == 0 {
			// The members are known first: the report is ahead of them.
			require.NoError(t, tr.Learn(t.Context(), "orders"))
			require.Equal(t, tok(uint64(low)), position(t, tr, "orders"), "round %d", round)
			w.push("orders", tok(uint64(old)))
			require.Equal(t, tok(uint64(low)), position(t, tr, "orders"),
				"round %d: the old row under the group's name does not move the group past its members", round)
		} else {
			// The report is the first news of the group: it is not the
			// members' position, so the group stays unknown.
			w.push("orders", tok(uint64(old)))
			pos, known := tr.Position("orders")
			require.False(t, known, "round %d: no partition is known, so neither is the group (got %v)", round, pos)
		}

		target := low + 1 + rng.IntN(old-low)
		reached, behind, err := tr.WaitReached(expiredContext(t), tok(uint64(target)), "orders")
		require.NoError(t, err)
		require.False(t, reached, "round %d: partitions at %d at the lowest, old row at %d, target %d", round, low, old, target)
		require.Equal(t, []string{"orders"}, behind)

		// The members still move the group.
		for _, p := range parts {
			tr.Advance(p, tok(uint64(old+1)))
		}
		require.Equal(t, tok(uint64(old+1)), position(t, tr, "orders"), "round %d", round)
	}
}

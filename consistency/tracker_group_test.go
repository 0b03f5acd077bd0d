package consistency_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestTracker_GroupIsItsLowestMember: a group name (a processor split
// into partitions) stands for the lowest of its members' positions, and
// is unknown until every member is known; a check of the group reports it
// reached exactly then. Members, moves and tokens are drawn at random, in
// any order, late moves included.
func TestTracker_GroupIsItsLowestMember(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	for round := range 50 {
		tr := setup(t, nil)
		n := 1 + rng.IntN(4)
		members := make([]string, n)
		for i := range members {
			members[i] = fmt.Sprintf("summary#%d/%d", i, n)
		}
		tr.Group("summary", members...)
		highest := map[string]int{}
		for step := range 30 {
			m := members[rng.IntN(n)]
			p := 1 + rng.IntN(40)
			tr.Advance(m, tok(uint64(p)))
			highest[m] = max(highest[m], p)

			low, known := 0, len(highest) == n
			for _, h := range highest {
				if low == 0 || h < low {
					low = h
				}
			}
			pos, ok := tr.Position("summary")
			require.Equal(t, known, ok, "round %d step %d: the group is known once all %d members are", round, step, n)
			if known {
				require.Equal(t, tok(uint64(low)), pos, "round %d step %d: the group is its lowest member", round, step)
			}
			want := 1 + rng.IntN(40)
			reached, behind, err := tr.WaitReached(expired, tok(uint64(want)), "summary")
			require.NoError(t, err)
			require.Equal(t, known && low >= want, reached, "round %d step %d: reached %d with members at %v", round, step, want, highest)
			if !reached {
				require.Equal(t, []string{"summary"}, behind)
			}
		}
	}
}

package consistency_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestGroupAdvancedPastItsMembersStaysThere: an Advance of a group's own
// name (a generation switch: the new generation reflects more than the
// live partitions say) holds while the members move forward below it. The
// next forward move of a member set the group back to its lowest member,
// and reads after a rebuild were stale for nothing.
func TestGroupAdvancedPastItsMembersStaysThere(t *testing.T) {
	t.Parallel()
	tr := setup(t, nil)
	tr.Group("summary", "summary#0/2", "summary#1/2")
	tr.Advance("summary#0/2", tok(5))
	tr.Advance("summary#1/2", tok(5))
	tr.Advance("summary", tok(20))
	tr.Advance("summary#0/2", tok(6))
	pos, ok := tr.Position("summary")
	require.True(t, ok)
	require.Equal(t, tok(20), pos, "a member moving forward moved the group back")
}

// TestGroupPositionProperty: over random Advances and Resets of a group's
// members and of the group itself, the group stands at the highest of its
// lowest member and what its own Advances established since the last
// reset (of a member or of the group) or regrouping.
func TestGroupPositionProperty(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for run := range 200 {
		tr := setup(t, nil)
		members := []string{"m#0/3", "m#1/3", "m#2/3"}
		tr.Group("m", members...)
		pos := map[string]uint64{}
		for _, m := range members {
			pos[m] = uint64(rng.IntN(10)) + 1
			tr.Advance(m, tok(pos[m]))
		}
		var floor uint64
		for step := range 40 {
			what := fmt.Sprintf("run %d step %d", run, step)
			switch k := rng.IntN(10); {
			case k < 6: // a member moves forward
				m := members[rng.IntN(len(members))]
				pos[m] += uint64(rng.IntN(5))
				tr.Advance(m, tok(pos[m]))
			case k < 8: // the group's own Advance (a switch)
				floor = max(floor, lowest(pos, members)+uint64(rng.IntN(20)))
				tr.Advance("m", tok(floor))
			case k < 9: // a member's Reset
				m := members[rng.IntN(len(members))]
				pos[m] = uint64(rng.IntN(int(pos[m]))) + 1
				tr.Reset(m, tok(pos[m]))
				floor = 0
			default: // the group's Reset
				floor = 0
				r := uint64(rng.IntN(int(lowest(pos, members)))) + 1
				tr.Reset("m", tok(r))
				// Until a member moves, the group stays where Reset put it.
				got, ok := tr.Position("m")
				require.True(t, ok, what)
				require.Equal(t, tok(r), got, what)
				continue
			}
			got, ok := tr.Position("m")
			require.True(t, ok, what)
			require.Equal(t, tok(max(floor, lowest(pos, members))), got, "%s: members %v, floor %d", what, pos, floor)
		}
	}
}

func lowest(pos map[string]uint64, members []string) uint64 {
	low := pos[members[0]]
	for _, m := range members[1:] {
		low = min(low, pos[m])
	}
	return low
}

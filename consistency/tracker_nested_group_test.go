package consistency_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
)

// groupTree is a random tree of groups: groups maps each group to its
// members, and leaves are the names only ever moved by Advance or Reset.
type groupTree struct {
	groups map[string][]string
	order  []string // groups in the random order they are declared
	leaves []string
}

// randomGroupTree builds a tree of groups depth levels deep (1 to 4), each
// group with one to three members, some of them leaves at any level.
func randomGroupTree(rng *rand.Rand, depth int) *groupTree {
	tree := &groupTree{groups: map[string][]string{}}
	var build func(name string, level int)
	build = func(name string, level int) {
		n := 1 + rng.IntN(3)
		members := make([]string, n)
		for i := range members {
			members[i] = fmt.Sprintf("%s.%d", name, i)
			if level < depth && (i == 0 || rng.IntN(2) == 0) {
				build(members[i], level+1)
			} else {
				tree.leaves = append(tree.leaves, members[i])
			}
		}
		tree.groups[name] = members
		tree.order = append(tree.order, name)
	}
	build("g", 1)
	rng.Shuffle(len(tree.order), func(i, j int) { tree.order[i], tree.order[j] = tree.order[j], tree.order[i] })
	return tree
}

// want returns the position the Group doc promises for name: a leaf's own,
// a declared group's lowest member once all are known, nothing otherwise.
func (tree *groupTree) want(name string, declared map[string]bool, leaves map[string]int) (int, bool) {
	members, isGroup := tree.groups[name]
	if !isGroup {
		p, ok := leaves[name]
		return p, ok
	}
	if !declared[name] {
		return 0, false // a plain name nobody moved
	}
	low := 0
	for i, m := range members {
		p, ok := tree.want(m, declared, leaves)
		if !ok {
			return 0, false
		}
		if i == 0 || p < low {
			low = p
		}
	}
	return low, true
}

// TestTracker_NestedGroupIsItsLowestLeaf: a group whose members are groups
// (startReadLocked reads through them) follows its leaves at every level:
// unknown until every leaf under it is known, then the lowest of them,
// forward with Advance and back with Reset. Trees one to four groups deep,
// the order groups are declared in, and the moves of the leaves, late ones
// included, are drawn at random.
func TestTracker_NestedGroupIsItsLowestLeaf(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	for round := range 60 {
		tr := setup(t, nil)
		tree := randomGroupTree(rng, 1+rng.IntN(4))
		declared := map[string]bool{}
		leaves := map[string]int{}
		check := func(step string) {
			t.Helper()
			for name := range tree.groups {
				low, known := tree.want(name, declared, leaves)
				pos, ok := tr.Position(name)
				require.Equal(t, known, ok, "round %d %s: is %s known? groups %v declared %v, leaves at %v",
					round, step, name, tree.groups, declared, leaves)
				if known {
					require.Equal(t, tok(uint64(low)), pos, "round %d %s: %s is its lowest leaf; groups %v, leaves at %v",
						round, step, name, tree.groups, leaves)
				}
			}
			low, known := tree.want("g", declared, leaves)
			target := 1 + rng.IntN(40)
			reached, _, err := tr.WaitReached(expired, tok(uint64(target)), "g")
			require.NoError(t, err)
			require.Equal(t, known && low >= target, reached, "round %d %s: g reached %d? leaves at %v", round, step, target, leaves)
		}
		pending := tree.order
		for step := range 40 {
			// Groups are declared among the moves, so some are declared
			// over members already known, some before their members exist.
			if len(pending) > 0 && rng.IntN(3) == 0 {
				name := pending[0]
				pending = pending[1:]
				tr.Group(name, tree.groups[name]...)
				declared[name] = true
				check(fmt.Sprintf("step %d, group %s declared", step, name))
				continue
			}
			leaf := tree.leaves[rng.IntN(len(tree.leaves))]
			p := 1 + rng.IntN(40)
			if rng.IntN(5) == 0 {
				tr.Reset(leaf, tok(uint64(p)))
				leaves[leaf] = p
				check(fmt.Sprintf("step %d, %s reset to %d", step, leaf, p))
				continue
			}
			tr.Advance(leaf, tok(uint64(p)))
			leaves[leaf] = max(leaves[leaf], p)
			check(fmt.Sprintf("step %d, %s advanced to %d", step, leaf, p))
		}
		for _, name := range pending {
			tr.Group(name, tree.groups[name]...)
			declared[name] = true
		}
		for _, leaf := range tree.leaves {
			tr.Advance(leaf, tok(uint64(1+rng.IntN(40))))
		}
		for _, leaf := range tree.leaves {
			p, _ := tr.Position(leaf)
			leaves[leaf] = int(p.Minor())
		}
		check("every leaf known")
	}
}

// TestTracker_NestedGroupWakesItsWaiters: a wait on a group of groups is
// woken by a move of a leaf two levels down, and a Reset there moves the
// outer group back so that a later wait is stale again.
func TestTracker_NestedGroupWakesItsWaiters(t *testing.T) {
	t.Parallel()
	tr := setup(t, &consistency.TrackerConfig{MaxTimeout: time.Minute, DefaultTimeout: time.Minute})
	tr.Group("inner", "a", "b")
	tr.Group("outer", "inner", "c")
	tr.Advance("a", tok(5))
	tr.Advance("b", tok(5))
	tr.Advance("c", tok(9))

	ch := goWait(context.Background(), tr, tok(7), "outer")
	awaitParked(t, tr, func() bool { return tr.Waiting("outer") == 1 })
	tr.Advance("a", tok(8))
	tr.Advance("b", tok(7))
	r := receive(t, ch)
	require.NoError(t, r.err)
	require.False(t, r.st.Stale, "inner reached 7, and outer with it: %+v", r.st)
	require.Equal(t, tok(7), r.st.Checkpoint)

	tr.Reset("b", tok(2))
	pos, ok := tr.Position("outer")
	require.True(t, ok)
	require.Equal(t, tok(2), pos, "a Reset two levels down moves the outer group back")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	st, err := tr.Wait(ctx, tok(7), "outer")
	require.NoError(t, err)
	require.True(t, st.Stale, "after the reset the outer group is behind 7: %+v", st)
}

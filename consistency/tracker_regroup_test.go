package consistency_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
)

// TestTracker_GroupingAKnownNameReadsItsMembers: a processor split into
// partitions that rebuild from scratch leaves its old name known at the
// old checkpoint. Once grouped, that name is unknown until every
// partition is, and the next wait reads the partitions: a token between
// their positions and the old one is stale, not fresh from the old
// position. Positions, the partition count and the target are random.
func TestTracker_GroupingAKnownNameReadsItsMembers(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 5))
	for round := range 20 {
		old := 50 + rng.IntN(100)
		ps := newFakePositions()
		ps.set("orders", tok(uint64(old)))
		n := 1 + rng.IntN(4)
		parts := make([]string, n)
		low := 0
		for i := range parts {
			parts[i] = fmt.Sprintf("orders#%d/%d", i, n)
			p := rng.IntN(old)
			ps.set(parts[i], tok(uint64(p)))
			if i == 0 || p < low {
				low = p
			}
		}
		tr := setup(t, &consistency.TrackerConfig{Positions: ps})
		tr.Advance("orders", tok(uint64(old)))
		tr.Group("orders", parts...)

		pos, known := tr.Position("orders")
		require.False(t, known, "round %d: no partition is known yet, so neither is the group (got %v)", round, pos)

		target := low + 1 + rng.IntN(old-low)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		st, err := tr.Wait(ctx, tok(uint64(target)), "orders")
		cancel()
		require.NoError(t, err)
		require.True(t, st.Stale, "round %d: partitions at %d at the lowest, old name at %d, wait for %d: %+v", round, low, old, target, st)
		require.Equal(t, tok(uint64(low)), st.Checkpoint, "round %d: the wait read the partitions", round)
		for _, p := range parts {
			require.Equal(t, 1, ps.readsOf(p), "round %d: %s read once", round, p)
		}
	}
}

// TestTracker_RegroupFollowsTheNewMembers: changing a group's members
// forgets the old members' position. Unknown new members make the group
// unknown, outer groups with it; known ones lower than that position move
// the group back as a Reset does, so waits in between are stale and a
// parked waiter stays parked until the new members reach its target.
func TestTracker_RegroupFollowsTheNewMembers(t *testing.T) {
	t.Parallel()

	t.Run("UnknownMembersMakeTheGroupUnknown", func(t *testing.T) {
		t.Parallel()
		tr := setup(t, nil)
		tr.Advance("a", tok(100))
		tr.Group("g", "a")
		tr.Group("outer", "g")
		require.Equal(t, tok(100), position(t, tr, "outer"))

		tr.Group("g", "p0", "p1")
		_, known := tr.Position("g")
		require.False(t, known, "new members unknown: the group is unknown")
		_, known = tr.Position("outer")
		require.False(t, known, "and so is the group it is a member of")
		tr.Advance("p0", tok(3))
		tr.Advance("p1", tok(4))
		require.Equal(t, tok(3), position(t, tr, "g"))
		require.Equal(t, tok(3), position(t, tr, "outer"))
	})

	t.Run("LowerMembersMoveTheGroupBack", func(t *testing.T) {
		t.Parallel()
		tr := setup(t, &consistency.TrackerConfig{MaxTimeout: time.Minute, DefaultTimeout: time.Minute})
		tr.Advance("a", tok(100))
		tr.Advance("p0", tok(10))
		tr.Advance("p1", tok(20))
		tr.Group("g", "a")
		tr.Group("outer", "g")
		ch := goWait(context.Background(), tr, tok(150), "outer")
		awaitParked(t, tr, func() bool { return tr.Waiting("outer") == 1 })

		tr.Group("g", "p0", "p1")
		require.Equal(t, tok(10), position(t, tr, "g"), "the lowest new member, below the old position")
		require.Equal(t, tok(10), position(t, tr, "outer"))
		reached, behind, err := tr.WaitReached(expiredContext(t), tok(50), "outer")
		require.NoError(t, err)
		require.False(t, reached, "50 lies between the new members and the old position")
		require.Equal(t, []string{"outer"}, behind)

		tr.Advance("a", tok(200))
		require.Equal(t, tok(10), position(t, tr, "outer"), "a is no longer a member")
		tr.Advance("p0", tok(150))
		tr.Advance("p1", tok(160))
		r := receive(t, ch)
		require.NoError(t, r.err)
		require.False(t, r.st.Stale, "%+v", r.st)
		require.Equal(t, tok(150), r.st.Checkpoint)
	})

	t.Run("ParkedWaiterReadsTheNewMembers", func(t *testing.T) {
		t.Parallel()
		// Idle partitions already past the target: no push will come, so
		// only a read of them can end the wait before its deadline.
		ps := newFakePositions()
		ps.set("orders#0/2", tok(300))
		ps.set("orders#1/2", tok(250))
		tr := setup(t, &consistency.TrackerConfig{
			Positions: ps, Watcher: &fakeWatcher{},
			FallbackInterval: time.Hour, MaxTimeout: time.Minute, DefaultTimeout: time.Minute,
		})
		tr.Advance("orders", tok(100))
		ch := goWait(context.Background(), tr, tok(200), "orders")
		awaitParked(t, tr, func() bool { return tr.Waiting("orders") == 1 })

		tr.Group("orders", "orders#0/2", "orders#1/2")
		r := receive(t, ch)
		require.NoError(t, r.err)
		require.False(t, r.st.Stale, "%+v", r.st)
		require.Equal(t, tok(250), r.st.Checkpoint, "the slower partition, read once grouped")
	})

	t.Run("UngroupedNameIsReadAgain", func(t *testing.T) {
		t.Parallel()
		ps := newFakePositions()
		ps.set("orders", tok(7))
		tr := setup(t, &consistency.TrackerConfig{Positions: ps})
		tr.Advance("orders#0", tok(30))
		tr.Group("orders", "orders#0")
		require.Equal(t, tok(30), position(t, tr, "orders"))

		tr.Group("orders", "orders")
		_, known := tr.Position("orders")
		require.False(t, known, "the position was the partition's, not the name's own")
		require.NoError(t, tr.Learn(context.Background(), "orders"))
		require.Equal(t, tok(7), position(t, tr, "orders"), "the name's own position, read from the store")
	})

	t.Run("ReadInFlightOfTheOldNameIsDropped", func(t *testing.T) {
		t.Parallel()
		gp := newGatedPositions()
		gp.set("orders", tok(100))
		gp.set("orders#0/2", tok(0))
		gp.set("orders#1/2", tok(0))
		tr := setup(t, &consistency.TrackerConfig{Positions: gp})
		learned := make(chan error, 1)
		go func() { learned <- tr.Learn(context.Background(), "orders") }()
		require.Equal(t, "orders", within(t, gp.started, "the read of the old name did not start"))

		tr.Group("orders", "orders#0/2", "orders#1/2")
		close(gp.release)
		require.NoError(t, within(t, learned, "Learn did not return"))
		pos, known := tr.Position("orders")
		require.False(t, known, "the old name's checkpoint, read before the grouping, is not the partitions' (got %v)", pos)

		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		st, err := tr.Wait(ctx, tok(50), "orders")
		require.NoError(t, err)
		require.True(t, st.Stale, "both partitions are at 0: %+v", st)
	})
}

// position returns the position the tracker knows for name, failing the
// test when it knows none.
func position(t *testing.T, tr *consistency.Tracker, name string) events.Token {
	t.Helper()
	pos, ok := tr.Position(name)
	require.True(t, ok, "%s is unknown", name)
	return pos
}

// expiredContext returns a context already past its deadline: a check
// that does not wait.
func expiredContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	t.Cleanup(cancel)
	return ctx
}

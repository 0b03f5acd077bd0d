package feedtest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// NewProcessesFunc returns a fresh, empty store and the feed.Sources of two
// processes sharing it, both ready to hear each other's notifications. In
// memory both may be the store itself; on PostgreSQL each should be a
// store of its own over the same schema, so that what one process does
// reaches the other only through the database.
type NewProcessesFunc func(t *testing.T) (s events.Store, a, b feed.Source)

// processesTest is a behaviour that needs two processes, run once per
// mode.
type processesTest struct {
	name string
	fn   func(t *testing.T, m mode, s events.Store, a, b feed.Source)
}

var processesTests = []processesTest{
	{"ProcessorMembershipChangesArePushed", testMembershipPushed},
}

// RunProcesses runs the behaviours of processors in two processes sharing
// one store, each test once per delivery mode, on a fresh store.
func RunProcesses(t *testing.T, newProcesses NewProcessesFunc) {
	t.Helper()
	for _, tc := range processesTests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, m := range modes {
				t.Run(string(m), func(t *testing.T) {
					t.Parallel()
					s, a, b := newProcesses(t)
					tc.fn(t, m, s, a, b)
				})
			}
		})
	}
}

// pushBound is how soon a pushed membership change must have moved the
// partitions: far below the heartbeat interval of testMembershipPushed,
// far above the few round trips a move takes.
const pushBound = 10 * time.Second

// testMembershipPushed: with heartbeats 20 s apart, a process that joins
// gets its share, and one that leaves has its share taken, within
// pushBound: the sources announce membership changes (the joiner's first
// heartbeat, the partitions the old holder gives up, the leave) and the
// group acts on them at once. Without that both moves wait for a
// heartbeat.
func testMembershipPushed(t *testing.T, m mode, s events.Store, a, b feed.Source) {
	for _, src := range []feed.Source{a, b} {
		_, ok := src.(feed.MembershipWatcher)
		require.True(t, ok, "the source %T does not implement feed.MembershipWatcher", src)
	}
	name := uniqueName("push")
	cfg := func() *feed.ProcessorConfig {
		c := procConfig(name, 4)
		c.Subscriber.LeaseTTL, c.Subscriber.RenewInterval = time.Minute, 20*time.Second
		return c
	}
	h := func(ctx context.Context, env events.Envelope) error { return applyOnce(ctx, name, env) }
	pa := startProcessor(t, m, a, cfg(), h)
	require.Eventually(t, func() bool { return pa.active() == 4 }, waitTimeout, 5*time.Millisecond,
		"a lone process never took every partition")
	first := appendSpread(t, s, name, 8, 24)
	awaitPosition(t, pa.p, first[len(first)-1].Token)

	pb := startProcessor(t, m, b, cfg(), h)
	require.Eventually(t, func() bool { return pa.active() == 2 && pb.active() == 2 }, pushBound, 5*time.Millisecond,
		"B joined but the two did not split the partitions at once: joins or handovers are not announced")
	rest := appendSpread(t, s, name+"x", 8, 24)
	awaitPosition(t, pa.p, rest[len(rest)-1].Token)

	// Close, as on a router that goes on running: the leave may be
	// announced before the leases are given back, so the releases are
	// announced too.
	require.NoError(t, pb.p.Close())
	require.Eventually(t, func() bool { return pa.active() == 4 }, pushBound, 5*time.Millisecond,
		"B closed but A did not take its share at once: leaves or releases are not announced")
	pb.stop()

	// Once more, the process ending by its run's end this time.
	pc := startProcessor(t, m, b, cfg(), h)
	require.Eventually(t, func() bool { return pa.active() == 2 && pc.active() == 2 }, pushBound, 5*time.Millisecond,
		"C joined but the two did not split the partitions at once")
	pc.stop()
	require.Eventually(t, func() bool { return pa.active() == 4 }, pushBound, 5*time.Millisecond,
		"C stopped but A did not take its share at once: leaves are not announced")
	last := appendSpread(t, s, name+"y", 8, 24)
	awaitPosition(t, pa.p, last[len(last)-1].Token)
	requireAppliedOnce(t, a, name, append(append(first, rest...), last...))
}

package feedtest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// testProcessorHandles: processes of one processor that handle different
// things (two builds side by side) split its partitions only among those
// that handle everything any live one does. An older build's process
// stands by while a newer one runs, and delivers again once it is gone; if
// no live process handles everything, none delivers. A process that stops
// takes its record of what it handles with it. Processor.IsAssigned says
// which process delivers, and its channel closes when that changes.
func testProcessorHandles(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("handles")
	h := func(ctx context.Context, env events.Envelope) error { return applyOnce(ctx, name, env) }
	cfg := func(handles ...string) *feed.ProcessorConfig {
		c := procConfig(name, 4)
		c.Handles = handles
		return c
	}
	older := startProcessor(t, m, src, cfg("x"), h)
	require.Eventually(t, func() bool { return older.active() == 4 }, waitTimeout, 5*time.Millisecond)
	first := appendSpread(t, s, name, 8, 16)
	awaitPosition(t, older.p, first[len(first)-1].Token)
	ok, changed := older.p.IsAssigned()
	require.True(t, ok, "the only process delivers")

	// Two processes of the newer build start at once. Once one's
	// AwaitTakeover returns, no partition is held by the older process,
	// the other's share included (the store lists the lease holders).
	newer := startProcessor(t, m, src, cfg("x", "y"), h)
	twin := startProcessor(t, m, src, cfg("x", "y"), h)
	require.NoError(t, newer.p.AwaitTakeover(t.Context()))
	if insp, ok := src.(feed.Inspector); ok {
		infos, err := insp.Consumers(t.Context())
		require.NoError(t, err)
		for _, ci := range infos {
			if slices.Contains(newer.p.CheckpointNames(), ci.Name) {
				require.False(t, strings.HasPrefix(ci.Owner, older.p.Status().Member+"/"), "partition %s still held by the older process (%q)", ci.Name, ci.Owner)
			}
		}
	}
	select {
	case <-changed:
	case <-time.After(waitTimeout):
		t.Fatal("IsAssigned's channel did not close when the newer build joined")
	}
	requireAssigned(t, older.p, false)
	requireAssigned(t, newer.p, true)
	twin.stop()
	// Alone, the newer process delivers every partition once
	// AwaitTakeover returns (the older one cannot hold any: leases
	// exclude).
	require.Eventually(t, func() bool {
		return len(newer.p.Status().Members) == 2 && slices.Equal(older.p.Status().Assigned, []string{newer.p.Status().Member})
	}, waitTimeout, 5*time.Millisecond, "the twin's leaving was not seen")
	require.NoError(t, newer.p.AwaitTakeover(t.Context()))
	require.Equal(t, 4, newer.active())
	require.Eventually(t, func() bool { return newer.active() == 4 && older.active() == 0 }, waitTimeout, 5*time.Millisecond,
		"the newer build's process did not take every partition: older %d, newer %d", older.active(), newer.active())
	st := older.p.Status()
	require.Equal(t, []string{newer.p.Status().Member}, st.Assigned)
	require.ElementsMatch(t, []string{st.Member, newer.p.Status().Member}, st.Members)
	second := appendSpread(t, s, name+"b", 8, 16)
	awaitPosition(t, newer.p, second[len(second)-1].Token)

	// A third build that handles something neither does: nobody
	// handles everything, nobody delivers.
	other := startProcessor(t, m, src, cfg("z"), h)
	require.Eventually(t, func() bool {
		return older.active()+newer.active()+other.active() == 0 && len(other.p.Status().Members) == 3
	}, waitTimeout, 5*time.Millisecond, "older %d, newer %d, other %d", older.active(), newer.active(), other.active())
	require.Empty(t, other.p.Status().Assigned)
	for _, pr := range []*feed.Processor{older.p, newer.p, other.p} {
		requireAssigned(t, pr, false)
	}
	other.stop()
	require.Eventually(t, func() bool { return newer.active() == 4 }, waitTimeout, 5*time.Millisecond)

	// The rollback: the newer build goes, the older one delivers again.
	newer.stop()
	require.Eventually(t, func() bool { return older.active() == 4 }, waitTimeout, 5*time.Millisecond)
	requireAssigned(t, older.p, true)
	third := appendSpread(t, s, name+"c", 8, 16)
	awaitPosition(t, older.p, third[len(third)-1].Token)
	requireAppliedOnce(t, src, name, append(append(first, second...), third...))

	older.stop()
	requireAssigned(t, older.p, false) // stopped: it delivers nothing
	left, err := src.Rows().List(t.Context(), feed.RuntimeNamespace, feed.MembersHandleTable, feed.RowQuery{Prefix: name + "/"})
	require.NoError(t, err)
	require.Empty(t, left, "a process that stopped left its record of what it handles")
}

// requireAssigned waits until p's IsAssigned says want.
func requireAssigned(t *testing.T, p *feed.Processor, want bool) {
	t.Helper()
	require.Eventually(t, func() bool {
		ok, _ := p.IsAssigned()
		return ok == want
	}, waitTimeout, 5*time.Millisecond, "IsAssigned of %s is not %v", p.Status().Member, want)
}

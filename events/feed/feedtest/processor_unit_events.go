package feedtest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// testProcessorUnitEvents: on a router and delivering straight to the
// handler alike, a handler sees its unit's events, itself at its index,
// and a processor that is behind puts several events in a unit.
func testProcessorUnitEvents(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("unitevents")
	envs := appendSpread(t, s, name, 1, 6)
	var (
		mismatch atomic.Value
		largest  atomic.Int64
	)
	h := func(ctx context.Context, env events.Envelope) error {
		unit, i := feed.UnitEvents(ctx), feed.UnitIndex(ctx)
		if i >= len(unit) || unit[i].ID != env.ID {
			mismatch.Store(fmt.Sprintf("event %s at index %d of a unit of %d", env.ID, i, len(unit)))
		}
		if n := int64(len(unit)); n > largest.Load() {
			largest.Store(n)
		}
		return applyOnce(ctx, name, env)
	}
	cfg := procConfig(name, 1)
	cfg.CommitBatch = 10
	p := startProcessor(t, m, src, cfg, h)
	awaitPosition(t, p.p, envs[len(envs)-1].Token)
	require.Nil(t, mismatch.Load())
	require.Greater(t, largest.Load(), int64(1), "the backlog shared a unit")
	requireAppliedOnce(t, src, name, envs)
}

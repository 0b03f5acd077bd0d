package feedtest

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// testProcessorCountChangesInARow: a processor's partition count is
// changed twice in a row (three distinct counts, at random), each run
// stopped before the next starts, while some partitions of the first two
// counts lag behind the others (halted on an event, at random). The third
// count must still handle every event exactly once: what the first
// count's fast partitions handled lies past the second count's lagging
// ones, and only the first change knows it. Counts, lagging partitions and
// where they stop are drawn at random; the seed is logged.
func testProcessorCountChangesInARow(t *testing.T, m mode, s events.Store, src feed.Source) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 31))
	name := uniqueName("recount")
	all := appendSpread(t, s, name, 12, 36)
	index := map[string]int{}
	for i, e := range all {
		index[e.ID] = i
	}
	last := all[len(all)-1].Token
	counts := rng.Perm(4)[:3]
	for i := range counts {
		counts[i]++
	}
	t.Logf("counts %v", counts)

	for phase, count := range counts {
		final := phase == len(counts)-1
		// stopAt[i] is the index of the first event partition i fails on
		// (and halts, with MaxAttempts 1), or len(all) when it runs to
		// the end. The last count fails on nothing.
		stopAt := make([]int, count)
		for i := range stopAt {
			stopAt[i] = len(all)
			if !final && rng.IntN(2) == 0 {
				stopAt[i] = rng.IntN(len(all))
			}
		}
		cfg := procConfig(name, count)
		cfg.MaxAttempts = 1
		p := startProcessor(t, m, src, cfg, func(ctx context.Context, env events.Envelope) error {
			if index[env.ID] >= stopAt[feed.PartitionOf(feed.KeyOf(feed.ByStream, env), count)] {
				return errors.New("lagging on purpose")
			}
			return applyOnce(ctx, name, env)
		})
		// Status gives the halts; the stored checkpoints give where the
		// others are (Status has a position only once this process
		// committed one, and a partition may start at the end).
		require.Eventually(t, func() bool {
			for _, ps := range p.p.Status().Partitions {
				if ps.Halt != nil {
					continue
				}
				pos, err := src.Checkpoints().Position(t.Context(), ps.Checkpoint)
				if err != nil || pos.Before(last) {
					return false
				}
			}
			return true
		}, waitTimeout, 5*time.Millisecond, "count %d: every partition halts or reaches the end", count)
		p.stop()
	}
	requireAppliedOnce(t, src, name, all)
}

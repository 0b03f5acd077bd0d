package lag_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events/feed"
)

// TestPartitionedTargetIsItsSlowestPartition: a projection split into
// partitions checkpoints under one name per partition, none of them its
// own name. Over random partition counts and positions (a partition the
// store does not know yet included), its report stands at the slowest
// partition: that checkpoint, the events after it, its owner and its
// heartbeat (the first such partition when several are as slow).
func TestPartitionedTargetIsItsSlowestPartition(t *testing.T) {
	t.Parallel()
	for seed := range uint64(30) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 7))
			n := 2 + rng.IntN(7)
			names := make([]string, n)
			for i := range names {
				names[i] = feed.PartitionName("orders", i, n)
			}
			b := setup(t, &lag.Config{Projections: []lag.Target{{Name: "orders", Checkpoints: names}}})
			head := 1 + rng.IntN(50)
			b.store.append(head)
			low, slowest := head+1, -1
			absent := -1
			if rng.IntN(3) == 0 {
				absent = rng.IntN(n) // never committed: at the start of the feed
			}
			committedAt := make([]time.Time, n)
			for i, name := range names {
				if i == absent {
					low, slowest = 0, i
					continue
				}
				b.clock.Advance(time.Duration(1+rng.IntN(1000)) * time.Millisecond)
				pos := 1 + rng.IntN(head)
				b.store.commitBy(name, fmt.Sprint("runner-", i), token(pos))
				committedAt[i] = b.clock.Now()
				if pos < low && absent < 0 {
					low, slowest = pos, i
				}
			}
			b.clock.Advance(time.Second)
			r := b.check(t, "orders")
			require.Equal(t, token(low), r.Checkpoint)
			require.Equal(t, int64(head-low), r.PositionLag)
			if slowest == absent {
				require.Empty(t, r.Owner, "nobody holds a partition that never ran")
				require.Zero(t, r.HeartbeatAge)
				return
			}
			require.Equal(t, fmt.Sprint("runner-", slowest), r.Owner)
			require.Equal(t, b.clock.Now().Sub(committedAt[slowest]), r.HeartbeatAge)
		})
	}
}

func TestTargetCheckpointsMustBeNamed(t *testing.T) {
	t.Parallel()
	_, err := lag.NewMonitor(newFakeStore(nil), &lag.Config{Projections: []lag.Target{{Name: "orders", Checkpoints: []string{"orders#0/2", ""}}}})
	require.ErrorContains(t, err, "checkpoint name is empty")
}

package lag_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events/feed"
)

// TestPartitionedTargetIsItsSlowestPartition: a projection split into
// partitions checkpoints under one name per partition, none of them its
// own name. Over random partition counts and positions (a partition the
// store does not know yet included), its report stands at the slowest
// partition: that checkpoint, and the events after it.
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
			low := head
			absent := -1
			if rng.IntN(3) == 0 {
				absent = rng.IntN(n) // never committed: at the start of the feed
				low = 0
			}
			for i, name := range names {
				if i == absent {
					continue
				}
				pos := 1 + rng.IntN(head)
				b.store.commit(name, token(pos))
				low = min(low, pos)
			}
			r := b.check(t, "orders")
			require.Equal(t, token(low), r.Checkpoint)
			require.Equal(t, int64(head-low), r.PositionLag)
		})
	}
}

func TestTargetCheckpointsMustBeNamed(t *testing.T) {
	t.Parallel()
	_, err := lag.NewMonitor(newFakeStore(nil), &lag.Config{Projections: []lag.Target{{Name: "orders", Checkpoints: []string{"orders#0/2", ""}}}})
	require.ErrorContains(t, err, "checkpoint name is empty")
}

package pgstore

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// The remembered heads, under random commits (in and out of order) and
// forgetting, against a model: the map stays within its bound; a guess is
// never ahead of the newest commit; while nothing is evicted, a guess is
// exactly the newest commit since the stream was last forgotten.
func TestStreamHeadsFollowTheirModel(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	for _, streams := range []int{100, 2 * streamHeadsMax} {
		t.Run(fmt.Sprint("streams=", streams), func(t *testing.T) {
			t.Parallel()
			streamHeadsRandomly(t, rand.New(rand.NewPCG(seed, 5)), streams)
		})
	}
}

func streamHeadsRandomly(t *testing.T, rng *rand.Rand, streams int) {
	t.Helper()
	var h streamHeads
	// newest is each stream's newest commit since it was last forgotten
	// (0: none).
	newest := map[string]int64{}
	evicts := streams > streamHeadsMax
	for op := range 50_000 {
		id := fmt.Sprint("s-", rng.IntN(streams))
		switch r := rng.IntN(10); {
		case r < 6:
			v := int64(1 + rng.IntN(100))
			h.committed(id, v, v*10)
			newest[id] = max(newest[id], v)
		case r < 7:
			h.forget(id)
			newest[id] = 0
		default:
			got, ok := h.guess(id)
			if !ok {
				require.True(t, evicts || newest[id] == 0, "op %d: %s forgotten without eviction", op, id)
				continue
			}
			require.Equal(t, got.version*10, got.sortKey, "op %d: %s keeps its own sort key", op, id)
			if evicts {
				// An evicted head may come back older (a late reply),
				// never newer than the newest commit.
				require.LessOrEqual(t, got.version, newest[id], "op %d: %s is ahead", op, id)
			} else {
				require.Equal(t, newest[id], got.version, "op %d: %s", op, id)
			}
		}
		require.LessOrEqual(t, len(h.heads), streamHeadsMax, "op %d", op)
	}
}

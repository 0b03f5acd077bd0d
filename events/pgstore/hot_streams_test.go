package pgstore

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestHotStreamsExpireAndStayBounded marks random streams at random times:
// a stream is contended for hotFor after its last mark and not after, and
// the set never holds more than hotStreamsMax streams.
func TestHotStreamsExpireAndStayBounded(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 0))
	var h hotStreams
	now := time.Unix(0, 0)
	last := map[string]time.Time{}
	for range 20_000 {
		now = now.Add(time.Duration(r.IntN(2_000)) * time.Microsecond)
		id := fmt.Sprintf("s-%d", r.IntN(3*hotStreamsMax))
		if r.IntN(2) == 0 {
			h.mark(id, now)
			last[id] = now
		} else if got := h.has(id, now); got {
			// A mark may have been dropped to stay bounded, never kept
			// past its time.
			require.False(t, now.After(last[id].Add(hotFor)), "seed %d: %s still contended after %v", seed, id, hotFor)
		}
		require.LessOrEqual(t, len(h.until), hotStreamsMax, "seed %d", seed)
	}
	h.mark("fresh", now)
	require.True(t, h.has("fresh", now.Add(hotFor)), "seed %d", seed)
	require.False(t, h.has("fresh", now.Add(hotFor+time.Nanosecond)), "seed %d", seed)

	// Marks nobody asks about again are swept, so asking goes back to
	// taking no lock.
	later := now.Add(3 * hotFor)
	require.False(t, h.has("other", later), "seed %d", seed)
	require.False(t, h.has("other", later.Add(hotFor+time.Nanosecond)), "seed %d", seed)
	require.Empty(t, h.until, "seed %d", seed)
	require.False(t, h.any.Load(), "seed %d", seed)
}

package orders

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDemoLagShape: the lag the demo injects into order_summary has the
// shape DemoConfig.Lag, the README and `converge demo --help` give: every
// 40th order stalls for 8×Lag, about a quarter of the others are late by
// less than 2×Lag, and the rest are on time.
func TestDemoLagShape(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	lag := time.Duration(1 + r.Int64N(int64(time.Second)))
	l := &lagger{lag: lag, rng: rand.New(rand.NewPCG(seed, 42))}
	const n = 4000
	late := 0
	for i := 1; i <= n; i++ {
		d := l.delay()
		if i%40 == 0 {
			require.Equal(t, 8*lag, d, "seed %d: order %d", seed, i)
			continue
		}
		require.GreaterOrEqual(t, d, time.Duration(0))
		require.Less(t, d, 2*lag, "seed %d: order %d", seed, i)
		if d > 0 {
			late++
		}
	}
	share := float64(late) / float64(n-n/40)
	require.InDelta(t, 0.25, share, 0.05, "seed %d: share of late orders", seed)
}

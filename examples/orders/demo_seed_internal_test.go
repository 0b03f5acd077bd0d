package orders

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSeedZeroIsASeed: DemoConfig.Seed 0 runs seed 0, which plans other
// orders than seed 1 (`converge demo --seed 0` is not seed 1 in disguise)
// and the same orders each time; any seed is kept as given.
func TestSeedZeroIsASeed(t *testing.T) {
	t.Parallel()
	zero := (&DemoConfig{Seed: 0}).withDefaults()
	require.Zero(t, zero.Seed)
	one := (&DemoConfig{Seed: 1}).withDefaults()
	require.NotEqual(t, plan(one), plan(zero), "seed 0 plans its own orders")
	require.Equal(t, plan(zero), plan((&DemoConfig{}).withDefaults()), "seed 0 repeats")
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	c := (&DemoConfig{Seed: seed}).withDefaults()
	require.Equal(t, seed, c.Seed)
}

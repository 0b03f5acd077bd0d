package bench

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRatioKeepsThreeSignificantFigures: a ratio is within half a unit of
// its third significant figure of num/den, whatever its size, and 0 only
// when nothing was measured. Rounded to three decimals, a saga's 0.00259
// read 0.003, and a ratio under 0.0005 read 0.
func TestRatioKeepsThreeSignificantFigures(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for range 10000 {
		num := rng.Float64() * float64(rng.IntN(1_000_000)+1)
		den := rng.Float64()*1e6 + 1
		want := num / den
		got := ratio(num, den)
		if want == 0 {
			require.Zero(t, got)
			continue
		}
		require.NotZero(t, got, "%g / %g", num, den)
		require.InEpsilon(t, want, got, 0.0051, "%g / %g", num, den)
	}
	require.Zero(t, ratio(1, 0), "nothing measured")
	require.InEpsilon(t, 144/55703.7, ratio(144, 55703.7), 0.005)
}

package pgstore

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Over random snapshots: the age is how long the current xmin has held the
// horizon without a break (an idle snapshot, xmin = xmax, or another xmin,
// is a break), and zero while nothing runs.
func TestHorizonWatchTimesAnUnbrokenXmin(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	var w horizonWatch
	now := time.Unix(1_700_000_000, 0)
	var held int64 // model: the xmin seen holding, and since when
	var since time.Time
	for range 2000 {
		now = now.Add(time.Duration(rng.IntN(1000)) * time.Millisecond)
		xmin := int64(100 + rng.IntN(4))
		xmax := xmin + int64(rng.IntN(3)) // equal: nothing runs
		want := time.Duration(0)
		switch {
		case xmin == xmax:
			since = time.Time{}
		case since.IsZero() || xmin != held:
			held, since = xmin, now
		default:
			want = now.Sub(since)
		}
		require.Equal(t, want, w.age(xmin, xmax, now), "xmin %d xmax %d", xmin, xmax)
	}
}

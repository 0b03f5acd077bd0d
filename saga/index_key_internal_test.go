package saga

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// randomInstant draws from the whole range a time.Time can hold around the
// int64 nanosecond window: before 1970, inside it, and past 2262, where
// UnixNano wraps.
func randomInstant(r *rand.Rand) time.Time {
	switch r.IntN(4) {
	case 0:
		return time.Unix(-r.Int64N(1<<40), 0) // before 1970
	case 1:
		return time.Unix(0, math.MaxInt64).Add(time.Duration(r.Int64N(1 << 62))) // past 2262
	case 2:
		return time.Unix(0, math.MaxInt64-r.Int64N(1000)) // at the edge
	default:
		return time.Unix(0, r.Int64N(math.MaxInt64))
	}
}

// The ended, ignored and timer indexes are read in key order as time
// order: a key that sorted out of time order would purge or fire early.
func TestIndexKeysSortInTimeOrder(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(uint64(seed), 0))
	for range 5000 {
		a, b := randomInstant(r), randomInstant(r)
		if b.Before(a) {
			a, b = b, a
		}
		ka, kb := endedKey(a, "s", "x"), endedKey(b, "s", "x")
		require.LessOrEqual(t, ka, kb, "%s and %s", a, b)
		require.LessOrEqual(t, timerKey(a, "s", "x", "t"), timerKey(b, "s", "x", "t"), "%s and %s", a, b)
		require.LessOrEqual(t, ignoredIndexKey(a, "r"), ignoredIndexKey(b, "r"), "%s and %s", a, b)

		// Inside the window the key keeps the instant exactly.
		if !a.Before(time.Unix(0, 0)) && !a.After(time.Unix(0, math.MaxInt64)) {
			at, rest, err := parseTimeKey(ka)
			require.NoError(t, err)
			require.True(t, at.Equal(a), "%s parsed back as %s", a, at)
			require.Equal(t, instanceKey("s", "x"), rest)
		}
	}
}

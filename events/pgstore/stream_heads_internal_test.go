package pgstore

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The remembered heads, under random commits (in and out of order),
// misses and the passing of time, against a model: the map stays within
// its bound; a guess is never ahead of the newest commit; while nothing
// is forgotten, a guess is exactly the newest commit, is never made while
// guessing is paused, and a paused stream is remembered again once the
// pause is over.
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
	type model struct {
		version     int64
		pausedUntil time.Time
	}
	models := map[string]model{}
	now := time.Unix(1_700_000_000, 0)
	forgets := streams > streamHeadsMax
	for op := range 50_000 {
		id := fmt.Sprint("s-", rng.IntN(streams))
		m := models[id]
		switch r := rng.IntN(10); {
		case r < 6:
			v := int64(1 + rng.IntN(100))
			h.committed(id, v, v*10, now)
			if !m.pausedUntil.After(now) && v > m.version {
				m = model{version: v}
			}
			models[id] = m
		case r < 7:
			h.missed(id, now)
			models[id] = model{pausedUntil: now.Add(guessPauseFor)}
		case r < 9:
			now = now.Add(time.Duration(rng.IntN(3)) * time.Second)
		default:
			got, ok := h.guess(id)
			if !ok {
				continue
			}
			require.Equal(t, got.version*10, got.sortKey, "op %d: %s keeps its own sort key", op, id)
			if forgets {
				// A forgotten head may come back older (a late reply),
				// never newer than the newest commit.
				require.LessOrEqual(t, got.version, m.version, "op %d: %s is ahead", op, id)
			} else {
				require.False(t, m.pausedUntil.After(now), "op %d: %s guessed while paused", op, id)
				require.Equal(t, m.version, got.version, "op %d: %s", op, id)
			}
		}
		require.LessOrEqual(t, len(h.heads), streamHeadsMax, "op %d", op)
	}
}

package feedtest

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// testProcessorSkipsCarried: a handler learns from its context whether its
// delivery skips what the partitions of the processor's previous count
// handled (feed.SkipsCarried), which a lease that began at the start of
// the feed does not say. A new processor skips nothing; once its count
// changes (from and to counts drawn at random), its partitions do.
func testProcessorSkipsCarried(t *testing.T, m mode, s events.Store, src feed.Source) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 37))
	counts := rng.Perm(4)[:2]
	t.Logf("counts %d then %d", counts[0]+1, counts[1]+1)
	name := uniqueName("carried")
	type delivered struct{ leased, skips bool }
	var (
		mu  sync.Mutex
		got []delivered
	)
	h := func(ctx context.Context, env events.Envelope) error {
		_, leased := feed.LeaseFromContext(ctx)
		mu.Lock()
		got = append(got, delivered{leased: leased, skips: feed.SkipsCarried(ctx)})
		mu.Unlock()
		return applyOnce(ctx, name, env)
	}
	// requireDelivered checks what the deliveries since the last call said.
	requireDelivered := func(skips bool, what string) {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		require.NotEmpty(t, got)
		for _, d := range got {
			require.Equal(t, delivered{leased: true, skips: skips}, d, what)
		}
		got = nil
	}
	for i, count := range counts {
		evs := appendSpread(t, s, name+string(rune('a'+i)), 8, 16)
		p := startProcessor(t, m, src, procConfig(name, count+1), h)
		awaitPosition(t, p.p, evs[len(evs)-1].Token)
		p.stop()
		if i == 0 {
			requireDelivered(false, "a new processor skips nothing")
		} else {
			requireDelivered(true, "the partitions of a new count skip what the old ones handled")
		}
	}
	require.False(t, feed.SkipsCarried(t.Context()), "outside a delivery")
}

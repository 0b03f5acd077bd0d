package consistency_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
)

// TestRewindElsewhereDuringAPushOutageIsNoticed: another process rewinds a
// read model (its Runner.Reset) while this tracker's push is down, so the
// move's announcement is lost. Waits answered from the known position never
// block, so only the fallback loop can notice: it reads the known names
// while push is down, and once more when push is back (the rewind may fall
// between its last pass and the recovery). Either way the rewind is
// believed, and a token between the rewound and the old position reads
// stale, never fresh. Over random positions, with the rewind made during
// the outage or just before push returns.
func TestRewindElsewhereDuringAPushOutageIsNoticed(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 21))
	for _, atRecovery := range []bool{false, true} {
		old := uint64(10 + rng.IntN(1000))
		rewound := uint64(rng.IntN(int(old)))
		want := rewound + 1 + uint64(rng.IntN(int(old-rewound)))

		store := newFakePositions()
		store.set("p", tok(old))
		var healthy atomic.Bool
		healthy.Store(true)
		tr := setup(t, &consistency.TrackerConfig{
			Positions:        store,
			Watcher:          &fakeWatcher{},
			PushHealthy:      healthy.Load,
			FallbackInterval: 5 * time.Millisecond,
		})
		ctx := t.Context()
		st, err := tr.Wait(ctx, tok(want), "p")
		require.NoError(t, err)
		require.False(t, st.Stale, "before the rewind")

		// From here on, a read is the fallback loop's.
		reads := make(chan string, 1)
		store.mu.Lock()
		store.read = reads
		store.mu.Unlock()
		healthy.Store(false)
		// The loop reads the known name although nobody waits on it.
		deadline := time.After(10 * time.Second)
		for read := false; !read; {
			select {
			case name := <-reads:
				read = name == "p"
			case <-deadline:
				t.Fatal("the fallback loop never read the known name while push was down")
			}
		}
		store.set("p", tok(rewound))
		if atRecovery {
			healthy.Store(true)
		}
		require.Eventually(t, func() bool {
			pos, ok := tr.Position("p")
			return ok && pos == tok(rewound)
		}, 10*time.Second, time.Millisecond, "atRecovery=%v: the rewind to %d is believed", atRecovery, rewound)
		wctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		st, err = tr.Wait(wctx, tok(want), "p")
		cancel()
		require.NoError(t, err)
		require.True(t, st.Stale, "atRecovery=%v: token %d after a rewind to %d reads stale", atRecovery, want, rewound)
		require.Equal(t, tok(rewound), st.Checkpoint)
	}
}

// TestFailedReadAfterPushReturnsIsRetried: the read made when push comes
// back exists to find a rewind announced during the outage; when it fails
// (the store errors), the loop reads again on later ticks instead of going
// quiet, and believes the rewind once the store answers.
func TestFailedReadAfterPushReturnsIsRetried(t *testing.T) {
	t.Parallel()
	store := newFakePositions()
	store.set("p", tok(50))
	var healthy atomic.Bool
	healthy.Store(true)
	tr := setup(t, &consistency.TrackerConfig{
		Positions:        store,
		Watcher:          &fakeWatcher{},
		PushHealthy:      healthy.Load,
		FallbackInterval: 5 * time.Millisecond,
	})
	st, err := tr.Wait(t.Context(), tok(40), "p")
	require.NoError(t, err)
	require.False(t, st.Stale)

	reads := make(chan string, 1)
	awaitReads := func(n int, why string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for n > 0 {
			select {
			case name := <-reads:
				if name == "p" {
					n--
				}
			case <-deadline:
				t.Fatal(why)
			}
		}
	}
	store.mu.Lock()
	store.read = reads
	store.err = errors.New("store unavailable")
	store.mu.Unlock()
	healthy.Store(false)
	awaitReads(1, "the fallback loop never read the known name while push was down")
	store.set("p", tok(10)) // the rewind, announced while push was down
	healthy.Store(true)
	// Two reads after push is back: the first (failing) read alone would
	// be all an unfixed loop makes.
	awaitReads(2, "the loop stopped reading after the read made when push returned failed")
	store.mu.Lock()
	store.err = nil
	store.mu.Unlock()
	require.Eventually(t, func() bool {
		pos, ok := tr.Position("p")
		return ok && pos == tok(10)
	}, 10*time.Second, time.Millisecond, "the rewind is believed once the store answers")
}

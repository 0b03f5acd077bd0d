package consistency_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
)

// setupTicked is setup with a fallback loop that ticks only when the test
// calls tick, which returns once that tick's reads are done.
func setupTicked(t *testing.T, cfg *consistency.TrackerConfig) (tr *consistency.Tracker, tick func()) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tr, err := consistency.NewTracker(cfg)
	require.NoError(t, err)
	ticks := make(chan time.Time)
	passed := make(chan struct{})
	consistency.SetFallbackTicks(tr, ticks, func() { passed <- struct{}{} })
	require.NoError(t, tr.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, tr.Stop(context.Background())) })
	return tr, func() {
		t.Helper()
		select {
		case ticks <- time.Now():
		case <-time.After(5 * time.Second):
			t.Fatal("the fallback loop took no tick")
		}
		within(t, passed, "the fallback loop's pass did not end")
	}
}

// readCounts returns how often each name has been read so far.
func (f *fakePositions) readCounts() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.reads)
}

// readsSince returns the reads made since before, by name.
func (f *fakePositions) readsSince(before map[string]int) map[string]int {
	diff := map[string]int{}
	for name, n := range f.readCounts() {
		if d := n - before[name]; d > 0 {
			diff[name] = d
		}
	}
	return diff
}

// TestAWaitFindsAMoveNoPushReports: push is healthy and reports nothing,
// as when a move's notification was lost; the store holds the move. The
// fallback loop must read it while the wait still runs, although push is
// trusted the whole time.
func TestAWaitFindsAMoveNoPushReports(t *testing.T) {
	t.Parallel()
	pr := newFakePositions()
	pr.set("orders", tok(1))
	const interval = 10 * time.Millisecond
	tr := setup(t, &consistency.TrackerConfig{
		Positions: pr, Watcher: &fakeWatcher{}, PushHealthy: func() bool { return true },
		FallbackInterval: interval,
	})
	require.NoError(t, tr.Learn(t.Context(), "orders"))

	ctx, cancel := context.WithTimeout(t.Context(), 300*interval)
	defer cancel()
	res := goWait(ctx, tr, tok(5), "orders")
	awaitParked(t, tr, func() bool { return tr.Waiting("orders") == 1 })
	pr.set("orders", tok(5)) // committed; its notification lost

	r := receive(t, res)
	require.NoError(t, r.err)
	require.False(t, r.st.Stale, "the store is at the target, yet the wait read stale: %+v", r.st)
	require.Equal(t, tok(5), r.st.Checkpoint)
}

// TestSafetyPollReadsEachWaitedNameOncePerTick: with push trusted, the
// fallback loop reads, at each tick, every name waited on at that tick and
// the one before, a group through its members, each once however many
// waits it has and however many waited names stand for it, and nothing
// else. So a wait push answers within a tick costs no read, the load does
// not grow with the waiters, and a wait whose notification was lost ends
// fresh at the second tick after the store moved.
func TestSafetyPollReadsEachWaitedNameOncePerTick(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	for round := range 20 {
		msg := fmt.Sprintf("seed %d, round %d", seed, round)
		pr := newFakePositions()
		tr, tick := setupTicked(t, &consistency.TrackerConfig{
			Positions: pr, Watcher: &fakeWatcher{}, PushHealthy: func() bool { return true },
			DefaultTimeout: time.Minute, MaxTimeout: time.Minute,
		})

		plain := make([]string, 1+r.IntN(8))
		for i := range plain {
			plain[i] = fmt.Sprintf("m%d", i)
			pr.set(plain[i], tok(1))
		}
		require.NoError(t, tr.Learn(t.Context(), plain...), msg)
		// leaves maps each name a wait may name to the stored positions it
		// stands for.
		leaves := map[string][]string{}
		for _, n := range plain {
			leaves[n] = []string{n}
		}
		if r.IntN(2) == 0 {
			members := slices.Clone(plain)
			r.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
			members = members[:1+r.IntN(len(members))]
			tr.Group("g", members...)
			leaves["g"] = members
		}
		choices := slices.Sorted(maps.Keys(leaves))
		// Some names nobody waits on: they must never be read.
		pool := choices[:1+r.IntN(len(choices))]

		type waiter struct {
			names []string
			res   <-chan waitResult
			stop  context.CancelFunc
		}
		waiters := make([]waiter, 1+r.IntN(30))
		for i := range waiters {
			var names []string
			for range 1 + r.IntN(3) {
				names = append(names, pool[r.IntN(len(pool))])
			}
			ctx, stop := context.WithCancel(t.Context())
			waiters[i] = waiter{names: names, stop: stop, res: goWait(ctx, tr, tok(uint64(2+r.IntN(5))), names...)}
		}
		parked := func(n int) func() bool {
			return func() bool {
				sum := 0
				for _, name := range choices {
					sum += tr.Waiting(name)
				}
				return sum == n && tr.Stats().Waiters == n
			}
		}
		awaitParked(t, tr, parked(len(waiters)))
		// readOnce is what a tick reads when ws have waited since the tick
		// before: each of their stored positions, once.
		readOnce := func(ws []waiter) map[string]int {
			want := map[string]int{}
			for _, w := range ws {
				for _, name := range w.names {
					for _, leaf := range leaves[name] {
						want[leaf] = 1
					}
				}
			}
			return want
		}

		before := pr.readCounts()
		tick()
		require.Empty(t, pr.readsSince(before), "%s: nobody had waited a tick yet", msg)

		before = pr.readCounts()
		tick()
		require.Equal(t, readOnce(waiters), pr.readsSince(before), "%s: %d waits", msg, len(waiters))

		// The store moves, and push says nothing.
		moved := map[string]bool{}
		for _, n := range plain {
			if r.IntN(2) == 0 {
				moved[n] = true
				pr.set(n, tok(7))
			}
		}
		before = pr.readCounts()
		tick()
		require.Equal(t, readOnce(waiters), pr.readsSince(before), msg)
		var left []waiter
		for _, w := range waiters {
			caughtUp := true
			for _, name := range w.names {
				for _, leaf := range leaves[name] {
					caughtUp = caughtUp && moved[leaf]
				}
			}
			if !caughtUp {
				left = append(left, w)
				continue
			}
			got := receive(t, w.res)
			require.NoError(t, got.err, msg)
			require.False(t, got.st.Stale, "%s: the store moved %v past the target: %+v", msg, w.names, got.st)
		}
		awaitParked(t, tr, parked(len(left)))

		before = pr.readCounts()
		tick()
		require.Equal(t, readOnce(left), pr.readsSince(before), "%s: the waits still behind", msg)

		for _, w := range left {
			w.stop()
			got := receive(t, w.res)
			require.True(t, errors.Is(got.err, context.Canceled), "%s: %v", msg, got.err)
		}
		before = pr.readCounts()
		tick()
		require.Empty(t, pr.readsSince(before), "%s: nobody waits any more", msg)
		for _, w := range waiters {
			w.stop()
		}
	}
}

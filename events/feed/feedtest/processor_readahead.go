package feedtest

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// testProcessorReadAhead: a consumer whose pages come back full reads the
// next page while it delivers the current one. Pages smaller than units,
// units cut by failures at random places and redeliveries from the last
// checkpoint must still apply every event once, in each stream's order:
// a read-ahead from a position the consumer did not reach is dropped.
func testProcessorReadAhead(t *testing.T, m mode, s events.Store, src feed.Source) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	name := uniqueName("ahead")
	cfg := procConfig(name, 1)
	cfg.Categories = []string{name}
	cfg.Subscriber.BatchSize = 1 + r.IntN(4)
	cfg.CommitBatch = 1 + r.IntN(6)
	cfg.MaxAttempts = 1000 // transient failures only: never halt
	envs := appendSpread(t, s, name, 3, 40)
	// Each event fails on its first delivery with probability 1/4.
	failing := map[string]bool{}
	for _, e := range envs {
		failing[e.ID] = r.IntN(4) == 0
	}
	var (
		mu    sync.Mutex
		order orderChecker
	)
	p := startProcessor(t, m, src, cfg, func(ctx context.Context, env events.Envelope) error {
		order.see(env)
		if err := applyOnce(ctx, name, env); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if failing[env.ID] {
			failing[env.ID] = false
			return errors.New("transient")
		}
		return nil
	})
	awaitPositionWithin(t, p.p, envs[len(envs)-1].Token, 30*time.Second)
	requireAppliedOnce(t, src, name, envs)
	require.Empty(t, order.bad, "seed %d: batch %d, commit batch %d", seed, cfg.Subscriber.BatchSize, cfg.CommitBatch)
}

// awaitPositionWithin is awaitPosition with a bound of the caller's.
func awaitPositionWithin(t *testing.T, p *feed.Processor, tok events.Token, d time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		pos, err := p.Position(context.WithoutCancel(t.Context()))
		return err == nil && !pos.Before(tok)
	}, d, 5*time.Millisecond, "the processor did not reach %s", tok)
}

// testProcessorErrCut: a handler returning feed.ErrCut behind the head of
// its unit has the events before it applied again and committed by
// themselves, and gets the event again at the head of a unit of its own,
// without a counted failure (MaxAttempts 1 would halt on one). Every event
// is applied once.
func testProcessorErrCut(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("errcut")
	cfg := procConfig(name, 1)
	cfg.Categories = []string{name}
	cfg.CommitBatch = 10
	cfg.MaxAttempts = 1
	envs := appendSpread(t, s, name, 2, 8)
	var (
		mu    sync.Mutex
		heads = map[string]int{} // event id -> deliveries at a unit's head
	)
	p := startProcessor(t, m, src, cfg, func(ctx context.Context, env events.Envelope) error {
		if feed.UnitIndex(ctx) > 0 {
			return feed.ErrCut // every event must head its unit
		}
		mu.Lock()
		heads[env.ID]++
		mu.Unlock()
		return applyOnce(ctx, name, env)
	})
	awaitPositionWithin(t, p.p, envs[len(envs)-1].Token, 30*time.Second)
	requireAppliedOnce(t, src, name, envs)
	st := p.p.Status().Partitions[0]
	require.Equal(t, feed.PartitionActive, st.State, "a cut is no failure")
	require.Empty(t, st.LastError, "a cut is not reported as an error")
	mu.Lock()
	defer mu.Unlock()
	for _, e := range envs {
		// The event before a cut heads twice: its first run rolled back
		// with the unit.
		require.Positive(t, heads[e.ID], "event %s was applied at the head of a unit", e.ID)
	}
}

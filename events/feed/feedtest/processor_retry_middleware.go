package feedtest

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// testProcessorRetryMiddleware: handlers that write and then fail a
// random number of times, under Watermill's Retry middleware on the router
// (which calls the handler again within one delivery, so in the same unit
// of work), apply every event exactly once, and the events that fail
// MaxAttempts times are dead-lettered with none of their failed calls'
// writes committed. A middleware's calls after a failure in a unit run
// nothing and count as no attempt (feed.ErrUnitFailed).
func testProcessorRetryMiddleware(t *testing.T, m mode, s events.Store, src feed.Source) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	name := uniqueName("retrymw")
	const maxAttempts = 3
	envs := appendSpread(t, s, name, 1+rng.IntN(6), 8+rng.IntN(16))
	var mu sync.Mutex
	failures := map[string]int{} // calls left to fail, per event id
	dead := map[string]bool{}
	for _, e := range envs {
		f := rng.IntN(maxAttempts + 2)
		failures[e.ID] = f
		dead[e.ID] = f >= maxAttempts
	}
	h := func(ctx context.Context, env events.Envelope) error {
		mu.Lock()
		left := failures[env.ID]
		mu.Unlock()
		if left > 0 && feed.UnitIndex(ctx) > 0 {
			// Only failures at the head of a unit count as attempts:
			// move it there before failing.
			return feed.ErrCut
		}
		if err := applyOnce(ctx, name, env); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if failures[env.ID] > 0 {
			failures[env.ID]--
			return errors.New("failed after writing")
		}
		return nil
	}
	cfg := procConfig(name, 2)
	cfg.MaxAttempts = maxAttempts
	cfg.OnFailure = feed.DeadLetter
	retry := middleware.Retry{MaxRetries: 1 + rng.IntN(3), InitialInterval: time.Millisecond}
	p := startProcessorWith(t, m, src, cfg, h, retry.Middleware)
	awaitPosition(t, p.p, envs[len(envs)-1].Token)

	rows, err := src.Rows().List(t.Context(), name, appliedTable, feed.RowQuery{Limit: len(envs) + 10})
	require.NoError(t, err)
	applied := map[string]string{}
	for _, r := range rows {
		applied[r.Key] = string(r.Value)
	}
	wantDead := 0
	for _, e := range envs {
		if dead[e.ID] {
			wantDead++
			require.NotContains(t, applied, e.ID, "dead-lettered event %s: a failed call's writes were committed", e.ID)
			continue
		}
		require.Equal(t, "1", applied[e.ID], "event %s applied %s times", e.ID, applied[e.ID])
	}
	dls, err := p.p.DeadLetters(t.Context(), 0)
	require.NoError(t, err)
	require.Len(t, dls, wantDead, "every event that failed MaxAttempts times, and only those, is dead-lettered")
}

// testProcessorAckingMiddleware: a middleware that acknowledges a failure
// (as a poison queue does) lets the unit go on, and the events after the
// failed one in that unit are applied as usual, once each: only a call
// again for the failed event itself is refused (feed.ErrUnitFailed).
func testProcessorAckingMiddleware(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("ackmw")
	envs := appendSpread(t, s, name, 3, 10)
	bad := envs[0]
	var failed sync.Once
	h := func(ctx context.Context, env events.Envelope) error {
		if err := applyOnce(ctx, name, env); err != nil {
			return err
		}
		fail := false
		if env.ID == bad.ID {
			failed.Do(func() { fail = true })
		}
		if fail {
			return errors.New("failed after writing")
		}
		return nil
	}
	acking := func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			_, _ = h(msg) // acknowledged whatever happened
			return nil, nil
		}
	}
	p := startProcessorWith(t, m, src, procConfig(name, 1), h, acking)
	awaitPosition(t, p.p, envs[len(envs)-1].Token)
	if m == direct {
		// No router, no middleware: the failure rolled the unit back and
		// the event was applied again.
		requireAppliedOnce(t, src, name, envs)
		return
	}
	rows, err := src.Rows().List(t.Context(), name, appliedTable, feed.RowQuery{Limit: len(envs) + 10})
	require.NoError(t, err)
	applied := map[string]string{}
	for _, r := range rows {
		applied[r.Key] = string(r.Value)
	}
	for _, e := range envs {
		// The acknowledged failure committed what it wrote: once.
		require.Equal(t, "1", applied[e.ID], "event %s applied %s times", e.ID, applied[e.ID])
	}
}

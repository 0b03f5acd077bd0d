package feedtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/signal"
)

// renewWatch is a source whose checkpoint store watches the lease
// renewals that succeed once the test starts watching (watch).
type renewWatch struct {
	feed.Source
	cps *renewCounter
}

func (w *renewWatch) Checkpoints() feed.CheckpointStore { return w.cps }

type renewCounter struct {
	feed.CheckpointStore
	mu sync.Mutex
	// since is when watching began (zero before); renewed counts the
	// renewals begun since then that succeeded, the last begun at last.
	since   time.Time
	renewed int
	last    time.Time
	b       signal.Broadcast
}

func (c *renewCounter) Renew(ctx context.Context, l feed.Lease, ttl time.Duration) error {
	start := time.Now()
	c.mu.Lock()
	watched := !c.since.IsZero() && !start.Before(c.since)
	c.mu.Unlock()
	err := c.CheckpointStore.Renew(ctx, l, ttl)
	if err == nil && watched {
		c.mu.Lock()
		c.renewed++
		c.last = start
		c.mu.Unlock()
		c.b.Notify()
	}
	return err
}

// watch starts watching the renewals.
func (c *renewCounter) watch() {
	c.mu.Lock()
	c.since = time.Now()
	c.mu.Unlock()
}

// await waits until n watched renewals succeeded, the last begun at least
// span after watching began, and reports whether that happened before
// deadline.
func (c *renewCounter) await(n int, span time.Duration, deadline <-chan time.Time) bool {
	for {
		ch := c.b.C()
		c.mu.Lock()
		done := c.renewed >= n && c.last.Sub(c.since) >= span
		c.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-ch:
		case <-deadline:
			return false
		}
	}
}

// testProcessorPauseKeepsLeaseUnderHandler: a Pause that waits for a
// handler still holding its message keeps the partition's lease renewed
// until the handler has answered. A lease left to expire meanwhile would
// let another process take the partition and handle its events beside
// the handler still running. Once the handler answers (its Ack counts),
// the lease is given back and Pause returns.
func testProcessorPauseKeepsLeaseUnderHandler(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("pauseheld")
	cps := &renewCounter{CheckpointStore: src.Checkpoints()}
	cfg := procConfig(name, 1)
	cfg.Categories = []string{name}
	cfg.Subscriber.LeaseTTL, cfg.Subscriber.RenewInterval = time.Second, 50*time.Millisecond
	// How long the handler outlives the start of the pause. Under Run,
	// past the lease's TTL: only renewals keep the lease then. A router's
	// consumer gives a handler up LeaseTTL after its delivery ended, so
	// there a few renewals must come first, well before that.
	span := cfg.Subscriber.LeaseTTL
	if m == onRouter {
		cfg.Subscriber.LeaseTTL, span = 5*time.Second, 0
	}
	envs := appendSpread(t, s, name, 1, 1)
	entered := make(chan struct{})
	ended := make(chan struct{})
	answer := make(chan struct{})
	var once sync.Once
	pr := startProcessor(t, m, &renewWatch{Source: src, cps: cps}, cfg, func(ctx context.Context, env events.Envelope) error {
		first := false
		once.Do(func() { first = true })
		if first {
			close(entered)
			<-ctx.Done()
			close(ended)
			<-answer
		}
		// Its delivery has ended; what it writes still commits with an Ack.
		return applyOnce(context.WithoutCancel(ctx), name, env)
	})
	// Registered after startProcessor, so it runs before pr.stop: a failed
	// assertion must not leave the processor waiting for the handler.
	var answerOnce sync.Once
	letAnswer := func() { answerOnce.Do(func() { close(answer) }) }
	t.Cleanup(letAnswer)

	select {
	case <-entered:
	case <-time.After(waitTimeout):
		t.Fatal("the handler was never called")
	}
	pctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	type pauseResult struct {
		resume func()
		err    error
	}
	paused := make(chan pauseResult, 1)
	go func() {
		resume, err := pr.p.Pause(pctx)
		paused <- pauseResult{resume, err}
	}()
	select {
	case <-ended:
	case <-time.After(waitTimeout):
		t.Fatal("the pause did not end the handler's delivery")
	}

	cps.watch()
	if !cps.await(3, span, time.After(waitTimeout)) {
		_, err := src.Checkpoints().Acquire(t.Context(), name, "another-process", time.Minute)
		t.Fatalf("the lease was not renewed while Pause waited for the handler, so it expires under it (another process's Acquire now: %v)", err)
	}
	_, err := src.Checkpoints().Acquire(t.Context(), name, "another-process", time.Minute)
	require.ErrorIs(t, err, feed.ErrLeaseHeld, "another process took the partition while its handler still ran")
	select {
	case <-paused:
		t.Fatal("Pause returned while a handler still held its message")
	default:
	}

	letAnswer()
	select {
	case res := <-paused:
		require.NoError(t, res.err)
		defer res.resume()
	case <-time.After(waitTimeout):
		t.Fatal("Pause did not return once the handler answered")
	}
	l, err := src.Checkpoints().Acquire(t.Context(), name, "another-process", time.Minute)
	require.NoError(t, err, "Pause returned but the lease was not given back")
	require.NoError(t, src.Checkpoints().Release(t.Context(), l))
	pos, err := pr.p.Position(t.Context())
	require.NoError(t, err)
	require.Equal(t, envs[0].Token, pos, "the handler's answer after the pause began must commit")
	requireAppliedOnce(t, src, name, envs)
}

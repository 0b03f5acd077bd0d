package feedtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// testProcessorInterruptedHandlerIsNoFailure: a handler that fails
// because its delivery ended under it (the lease was lost while the store
// did not answer) has not failed on its event. With one attempt allowed
// and dead letters as the policy, the event is delivered again once the
// lease is back, and applied: not dead-lettered, not halted.
func testProcessorInterruptedHandlerIsNoFailure(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("interrupted")
	spy := newSpySource(src)
	cfg := procConfig(name, 1)
	cfg.Categories = []string{name}
	cfg.MaxAttempts = 1
	cfg.OnFailure = feed.DeadLetter
	cfg.Subscriber.LeaseTTL, cfg.Subscriber.RenewInterval = time.Second, 100*time.Millisecond
	envs := appendSpread(t, s, name, 2, 4)
	// The first event heads its unit, where failures count.
	slow := envs[0]
	var calls atomic.Int32
	entered := make(chan struct{})
	h := func(ctx context.Context, env events.Envelope) error {
		if env.ID == slow.ID && calls.Add(1) == 1 {
			close(entered)
			// As a handler whose statement is cancelled with its delivery.
			<-ctx.Done()
			return fmt.Errorf("write read model: %w", ctx.Err())
		}
		return applyOnce(ctx, name, env)
	}
	p := startProcessor(t, m, spy, cfg, h)
	<-entered
	// The store stops answering: renewals fail for a whole LeaseTTL and
	// the holder gives the lease up, which ends the handler's delivery.
	spy.cps.unreachable.Store(true)
	require.Eventually(t, func() bool {
		return p.p.Status().Partitions[0].Consumer.Lost > 0
	}, waitTimeout, 5*time.Millisecond, "the holder gives the lease up")
	spy.cps.unreachable.Store(false)

	awaitPosition(t, p.p, envs[3].Token)
	require.EqualValues(t, 2, calls.Load(), "the interrupted event is delivered again")
	dls, err := p.p.DeadLetters(t.Context(), 0)
	require.NoError(t, err)
	require.Empty(t, dls, "an interrupted handler is no failure of its event")
	require.Nil(t, p.p.Status().Partitions[0].Halt)
	requireAppliedOnce(t, src, name, envs)
}

// blockingWaiter's waits end only with their context, and announce
// themselves on entered (the first one closes it).
type blockingWaiter struct {
	entered chan struct{}
	once    sync.Once
}

func (w *blockingWaiter) WaitReached(ctx context.Context, _ events.Token, models ...string) (bool, []string, error) {
	w.once.Do(func() { close(w.entered) })
	<-ctx.Done()
	return false, models, ctx.Err()
}

// testProcessorInterruptedGateRunsNothing: a processor stopped while an
// event waits at its gate does not go on to run the handler, as if the
// models had been found behind: the delivery has ended, and the event is
// delivered again, gated again, by whoever runs the partition next.
func testProcessorInterruptedGateRunsNothing(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("gatestop")
	envs := appendSpread(t, s, name, 1, 1)
	w := &blockingWaiter{entered: make(chan struct{})}
	cfg := procConfig(name, 1)
	cfg.Categories = []string{name}
	cfg.GateTimeout = time.Minute
	cfg.Gate = func(_ context.Context, env events.Envelope) ([]string, events.Token, error) {
		return []string{"model"}, env.Token, nil
	}
	cfg.Waiter = w
	var calls atomic.Int32
	p := startProcessor(t, m, src, cfg, func(context.Context, events.Envelope) error {
		calls.Add(1)
		return nil
	})
	<-w.entered
	p.stop()
	require.Zero(t, calls.Load(), "the handler ran after its delivery ended")
	pos, err := p.p.Position(t.Context())
	require.NoError(t, err)
	require.True(t, pos.Before(envs[0].Token), "the event is delivered again")
}

// testProcessorDeadlineIsAFailure: a handler ended by a deadline on its
// message (Watermill's Timeout middleware) has failed, unlike one whose
// delivery ended: the attempts count, and a handler that always overruns
// is dead-lettered after MaxAttempts instead of being delivered for ever.
// (Direct delivery has no middleware to set a deadline: router only.)
func testProcessorDeadlineIsAFailure(t *testing.T, m mode, s events.Store, src feed.Source) {
	if m != onRouter {
		return
	}
	name := uniqueName("deadline")
	cfg := procConfig(name, 1)
	cfg.Categories = []string{name}
	cfg.MaxAttempts = 2
	cfg.OnFailure = feed.DeadLetter
	envs := appendSpread(t, s, name, 2, 4)
	slow := envs[0] // at the head of its unit, where failures count
	var calls atomic.Int32
	p, err := feed.NewProcessor(src, cfg, func(ctx context.Context, env events.Envelope) error {
		if env.ID == slow.ID {
			calls.Add(1)
			<-ctx.Done()
			return fmt.Errorf("write read model: %w", ctx.Err())
		}
		return applyOnce(ctx, name, env)
	})
	require.NoError(t, err)
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: waitTimeout}, watermill.NopLogger{})
	require.NoError(t, err)
	// Long enough that the other events' handlers, which it also bounds,
	// do not overrun it twice in a row on a loaded machine.
	r.AddMiddleware(middleware.Timeout(500 * time.Millisecond))
	require.NoError(t, p.AddHandlers(r))
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	ran := false // whether done was received before the cleanup
	t.Cleanup(func() {
		cancel()
		var err error
		if !ran {
			err = <-done
		}
		_ = p.Close()
		require.NoError(t, err, "the router's Run")
	})
	select {
	case <-r.Running():
	case err := <-done:
		ran = true
		t.Fatalf("the router stopped before running: %v", err)
	}

	awaitPosition(t, p, envs[3].Token)
	require.EqualValues(t, 2, calls.Load(), "handled MaxAttempts times, then given up on")
	dls, err := p.DeadLetters(t.Context(), 0)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	require.Equal(t, slow.ID, dls[0].Event.ID)
	requireAppliedOnce(t, src, name, envs[1:])
}

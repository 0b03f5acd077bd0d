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
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// runTests are behaviours of Processor.Run itself, or of the router mode
// alone, which the other mode has no counterpart of.
var runTests = []suiteTest{
	{"ProcessorRunReturnsOnCancelAndClose", testProcessorRunReturns},
	{"ProcessorRouterCloseLeavesGroup", testProcessorRouterClose},
	{"ProcessorCloseOnRunningRouterReleasesLeases", testProcessorCloseOnRunningRouter},
}

// How testProcessorFailureAtStop stops the processor.
const (
	// stopByCancel ends the context the router or Run was given.
	stopByCancel = "cancel"
	// stopByClose calls Processor.Close.
	stopByClose = "close"
	// stopUnanswered calls Processor.Close under a handler that answers
	// only after the consumer gave up on it: Close does not wait for
	// handlers, so the consumer gives the message and its unit up at once
	// and releases the lease.
	stopUnanswered = "unanswered"
	// stopCancelUnanswered ends the router's context under a handler
	// that answers only after the consumer gave up on it: a Watermill
	// subscription whose context ended does not wait for the holder of a
	// message either, so the consumer gives the message and its unit up
	// at once and releases the lease.
	stopCancelUnanswered = "cancel-unanswered"
)

// testProcessorFailureAtStop: a handler that fails once its unit's context
// ended (the processor is stopping) rolls its whole unit back, the events
// handled before it included, since they would otherwise commit together
// with the failed handler's partial writes. The checkpoint stays before
// the unit, and a restart applies every event once.
func testProcessorFailureAtStop(t *testing.T, m mode, s events.Store, src feed.Source) {
	hows := []string{stopByCancel, stopByClose}
	if m == onRouter {
		// Only a router's consumer can stop waiting for a handler; under
		// Run the consumer is the handler's caller.
		hows = append(hows, stopUnanswered, stopCancelUnanswered)
	}
	for _, how := range hows {
		t.Run(how, func(t *testing.T) { testProcessorFailureAtStopBy(t, m, s, src, how) })
	}
}

func testProcessorFailureAtStopBy(t *testing.T, m mode, s events.Store, src feed.Source, how string) {
	name := uniqueName("atstop")
	stream := name + "-1"
	cfg := procConfig(name, 1)
	cfg.Categories = []string{name} // the store is shared with the other subtests
	cfg.CommitBatch = 10
	released := make(chan struct{}, 1)
	unanswered := how == stopUnanswered || how == stopCancelUnanswered
	if unanswered {
		cfg.Subscriber.LeaseTTL = 300 * time.Millisecond
		if how == stopCancelUnanswered {
			// A consumer that waited for the handler (at most LeaseTTL)
			// before giving up would release the lease far too late.
			cfg.Subscriber.LeaseTTL = time.Minute
		}
		cfg.Subscriber.OnLeaseChange = func(ev feed.LeaseEvent) {
			if ev.Kind == feed.LeaseReleased {
				released <- struct{}{}
			}
		}
	}
	// The first event commits alone; the next five are appended in one
	// transaction, so they are read together and share a unit. The third of
	// them (version 4) writes, then fails once the processor is stopping.
	blocked := make(chan int, 1)
	answer := make(chan struct{})
	var once atomic.Bool
	h := func(ctx context.Context, env events.Envelope) error {
		if err := applyOnce(ctx, name, env); err != nil {
			return err
		}
		if env.StreamID != stream || env.Version != 4 || !once.CompareAndSwap(false, true) {
			return nil
		}
		blocked <- feed.UnitIndex(ctx)
		if unanswered {
			<-answer
			return nil
		}
		<-ctx.Done()
		return fmt.Errorf("write failed as the processor stopped: %w", context.Cause(ctx))
	}
	pr := startProcessor(t, m, src, cfg, h)
	// Registered after startProcessor, so it runs before pr.stop: a failed
	// assertion must not leave the router waiting for the handler.
	var answerOnce sync.Once
	letAnswer := func() { answerOnce.Do(func() { close(answer) }) }
	t.Cleanup(letAnswer)
	appendTo(t, s, stream, 0)
	first := awaitAllOf(t, s, name, 1)
	awaitPosition(t, pr.p, first[0].Token)
	appendTo(t, s, stream, 1, 2, 3, 4, 5)
	all := awaitAllOf(t, s, name, 6)
	select {
	case i := <-blocked:
		require.Equal(t, 2, i, "the five events were not delivered in one unit")
	case <-time.After(waitTimeout):
		t.Fatal("the third event of the unit was never handled")
	}

	requireRolledBack := func() {
		t.Helper()
		pos, err := src.Checkpoints().Position(t.Context(), name)
		require.NoError(t, err)
		require.Equal(t, first[0].Token, pos, "the checkpoint must stay before the unit of the failed handler")
		// Only the first event's row: none of the unit's writes, neither
		// the events' before the failed one nor its own.
		requireAppliedOnce(t, src, name, first)
	}
	switch how {
	case stopByCancel:
		pr.cancel()
	case stopByClose:
		require.NoError(t, pr.p.Close())
	case stopUnanswered, stopCancelUnanswered:
		if how == stopUnanswered {
			require.NoError(t, pr.p.Close())
		} else {
			pr.cancel()
		}
		select {
		case <-released:
		case <-time.After(waitTimeout):
			t.Fatal("the consumer never gave up on the handler that did not answer")
		}
		// The handler is still running: its unit was given up, and never
		// commits.
		requireRolledBack()
		letAnswer()
	}
	pr.stop()
	requireRolledBack()

	again := startProcessor(t, m, src, cfg, func(ctx context.Context, env events.Envelope) error {
		return applyOnce(ctx, name, env)
	})
	awaitPosition(t, again.p, all[len(all)-1].Token)
	requireAppliedOnce(t, src, name, all)
}

// testProcessorPanic: a panicking handler is a failing one, retried and then
// halted or dead-lettered per the policy, and the process carries on.
func testProcessorPanic(t *testing.T, m mode, s events.Store, src feed.Source) {
	for _, policy := range []struct {
		name string
		on   feed.OnFailure
	}{{"halt", feed.Halt}, {"dead-letter", feed.DeadLetter}} {
		t.Run(policy.name, func(t *testing.T) { testProcessorPanicWith(t, m, s, src, policy.on) })
	}
}

func testProcessorPanicWith(t *testing.T, m mode, s events.Store, src feed.Source, policy feed.OnFailure) {
	name := uniqueName("panic")
	cfg := procConfig(name, 1)
	cfg.Categories = []string{name} // the store is shared with the other subtest
	cfg.MaxAttempts = 2
	cfg.OnFailure = policy
	envs := appendSpread(t, s, name, 1, 3)
	bad := envs[1]
	var broken atomic.Bool
	broken.Store(true)
	var panics atomic.Int64
	pr := startProcessor(t, m, src, cfg, func(ctx context.Context, env events.Envelope) error {
		if env.ID == bad.ID && broken.Load() {
			panics.Add(1)
			panic("handler bug on " + env.ID)
		}
		return applyOnce(ctx, name, env)
	})

	if policy == feed.DeadLetter {
		awaitPosition(t, pr.p, envs[2].Token)
		dls, err := pr.p.DeadLetters(t.Context(), 0)
		require.NoError(t, err)
		require.Len(t, dls, 1)
		require.Equal(t, bad.ID, dls[0].Event.ID)
		require.Equal(t, 2, dls[0].Attempts)
		require.Contains(t, dls[0].Reason, "panicked")
		require.Contains(t, dls[0].Reason, "handler bug on "+bad.ID)
		require.LessOrEqual(t, panics.Load(), int64(3), "a dead-lettered event must not be retried past MaxAttempts")
		requireAppliedOnce(t, src, name, []events.Envelope{envs[0], envs[2]})
		return
	}
	requireHaltedAt(t, pr.p, bad, "panicked", 2, envs[0].Token)
	// Two failures at the head of a unit, plus at most one behind the head
	// of the first unit, which does not count.
	require.LessOrEqual(t, panics.Load(), int64(3), "a halted event must not be retried past MaxAttempts")
	broken.Store(false)
	resumeAndRequireAll(t, pr.p, src, name, envs)
}

// testProcessorRunReturns: Run returns once its context ends or Close is
// called, whatever its partitions are doing, releasing their leases.
func testProcessorRunReturns(t *testing.T, s events.Store, src feed.Source) {
	t.Run("cancel", func(t *testing.T) {
		name := uniqueName("runcancel")
		pr := runDelivering(t, s, src, name)
		pr.cancel()
		requireRunReturned(t, pr)
		require.ErrorIs(t, pr.runErr, context.Canceled)
		requireLeasesReleased(t, src, pr.p)
		// It left the membership group too, without Close: another
		// process sees itself alone at once.
		members, err := src.Checkpoints().Heartbeat(t.Context(), name, "another-process", time.Minute)
		require.NoError(t, err)
		require.Equal(t, []string{"another-process"}, members, "Run returned but its process is still a member")
	})
	t.Run("close", func(t *testing.T) {
		name := uniqueName("runclose")
		pr := runDelivering(t, s, src, name)
		require.NoError(t, pr.p.Close())
		requireRunReturned(t, pr)
		require.NoError(t, pr.runErr, "a Run ended by Close returns nil")
		requireLeasesReleased(t, src, pr.p)
	})
	t.Run("close-while-halted", func(t *testing.T) {
		name := uniqueName("runhalted")
		cfg := procConfig(name, 1)
		cfg.Categories = []string{name}
		cfg.MaxAttempts = 1
		cfg.HaltCheckInterval = time.Hour // only Close may end the wait
		appendSpread(t, s, name, 1, 1)
		pr := startProcessor(t, direct, src, cfg, func(context.Context, events.Envelope) error {
			return fmt.Errorf("never applies")
		})
		require.Eventually(t, func() bool { return pr.p.Status().Partitions[0].State == feed.PartitionHalted },
			waitTimeout, 5*time.Millisecond)
		require.NoError(t, pr.p.Close())
		requireRunReturned(t, pr)
		require.NoError(t, pr.runErr)
	})
	t.Run("closed-before-run", func(t *testing.T) {
		name := uniqueName("runclosed")
		cfg := procConfig(name, 1)
		cfg.Categories = []string{name}
		appendSpread(t, s, name, 1, 1)
		var calls atomic.Int64
		p, err := feed.NewProcessor(src, cfg, func(context.Context, events.Envelope) error {
			calls.Add(1)
			return nil
		})
		require.NoError(t, err)
		require.NoError(t, p.Close())
		done := make(chan error, 1)
		go func() { done <- p.Run(t.Context()) }()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(waitTimeout):
			t.Fatal("Run of a closed processor did not return")
		}
		require.Zero(t, calls.Load(), "a closed processor handled an event")
	})
}

// runDelivering starts a two-partition processor under Run and waits until
// it applied a few events.
func runDelivering(t *testing.T, s events.Store, src feed.Source, name string) *procRun {
	t.Helper()
	cfg := procConfig(name, 2)
	cfg.Categories = []string{name} // the store is shared with the other subtests
	envs := appendSpread(t, s, name, 4, 8)
	pr := startProcessor(t, direct, src, cfg, func(ctx context.Context, env events.Envelope) error {
		return applyOnce(ctx, name, env)
	})
	awaitPosition(t, pr.p, envs[len(envs)-1].Token)
	requireAppliedOnce(t, src, name, envs)
	return pr
}

// requireRunReturned waits for pr's Run to return.
func requireRunReturned(t *testing.T, pr *procRun) {
	t.Helper()
	select {
	case <-pr.done:
	case <-time.After(waitTimeout):
		t.Fatalf("Run did not return within %s", waitTimeout)
	}
}

// requireLeasesReleased checks that another owner takes every partition's
// lease at once, without waiting for it to expire.
func requireLeasesReleased(t *testing.T, src feed.Source, p *feed.Processor) {
	t.Helper()
	for _, cp := range p.CheckpointNames() {
		l, err := src.Checkpoints().Acquire(t.Context(), cp, "another-process", time.Minute)
		require.NoError(t, err, "the lease of %s was not released", cp)
		require.NoError(t, src.Checkpoints().Release(t.Context(), l))
	}
}

// testProcessorRouterClose: closing the router a processor is mounted on
// stops the processor without Close: by the time the router's Close
// returns, its leases are released and it has left the membership group,
// so another process takes its partitions over at once rather than never
// (a member that stays in the group keeps its share, which nobody
// delivers). A stopped processor cannot be mounted again.
func testProcessorRouterClose(t *testing.T, s events.Store, src feed.Source) {
	t.Run("alone", func(t *testing.T) {
		name, p, r, done := caughtUpOnRouter(t, s, src, "routerclose", runRouter)

		require.NoError(t, r.Close())
		require.NoError(t, <-done)
		requireLeasesReleased(t, src, p)
		members, err := src.Checkpoints().Heartbeat(t.Context(), name, "another-process", time.Minute)
		require.NoError(t, err)
		require.Equal(t, []string{"another-process"}, members, "the router closed but its processor is still a member")
		require.NoError(t, src.Checkpoints().Leave(t.Context(), name, "another-process"))

		again, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
		require.NoError(t, err)
		require.Error(t, p.AddHandlers(again), "a processor whose router closed was mounted again")
		require.NoError(t, p.Close(), "Close after the router's is harmless")
	})
	t.Run("hands-over", func(t *testing.T) {
		name := uniqueName("routerhandover")
		cfg := procConfig(name, 2)
		cfg.Categories = []string{name}
		var byA atomic.Int64
		pa, err := feed.NewProcessor(src, cfg, func(ctx context.Context, env events.Envelope) error {
			byA.Add(1)
			return applyOnce(ctx, name, env)
		})
		require.NoError(t, err)
		t.Cleanup(func() { _ = pa.Close() })
		ra, doneA := runRouter(t, pa)
		b := startProcessor(t, onRouter, src, cfg, func(ctx context.Context, env events.Envelope) error {
			return applyOnce(ctx, name, env)
		})
		active := func(p *feed.Processor) int {
			n := 0
			for _, ps := range p.Status().Partitions {
				if ps.State == feed.PartitionActive {
					n++
				}
			}
			return n
		}
		require.Eventually(t, func() bool { return active(pa) == 1 && b.active() == 1 },
			waitTimeout, 5*time.Millisecond, "the two processes never split the partitions")

		require.NoError(t, ra.Close())
		require.NoError(t, <-doneA)
		handledByA := byA.Load()
		envs := appendSpread(t, s, name, 8, 20)
		awaitPosition(t, b.p, envs[len(envs)-1].Token)
		requireAppliedOnce(t, src, name, envs)
		require.Equal(t, handledByA, byA.Load(), "the process whose router closed handled events")
	})
}

// runRouter mounts p on a router of its own and runs it; done gets what
// the router's Run returned.
func runRouter(t *testing.T, p *feed.Processor) (*message.Router, <-chan error) {
	t.Helper()
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: waitTimeout}, watermill.NopLogger{})
	require.NoError(t, err)
	require.NoError(t, p.AddHandlers(r))
	done := make(chan error, 1)
	go func() { done <- r.Run(context.WithoutCancel(t.Context())) }()
	select {
	case <-r.Running():
	case err := <-done:
		t.Fatalf("the router of processor %s stopped before running: %v", p.Name(), err)
	}
	t.Cleanup(func() {
		_ = r.Close()
	})
	return r, done
}

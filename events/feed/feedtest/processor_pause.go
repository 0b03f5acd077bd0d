package feedtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// handledCounts counts, per event id, the calls of a handler that
// returned nil.
type handledCounts struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *handledCounts) count(env events.Envelope) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == nil {
		h.n = map[string]int{}
	}
	h.n[env.ID]++
}

// atLeast reports whether every event of envs was handled n times or more.
func (h *handledCounts) atLeast(envs []events.Envelope, n int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range envs {
		if h.n[e.ID] < n {
			return false
		}
	}
	return true
}

// testProcessorPause: Processor.Pause gives the partitions' leases back
// without stopping the processor, so an operation can take them and move
// the checkpoints (as a projection's reset does); once resumed, the
// processor delivers again from the moved checkpoints. On a router its
// subscriptions stay open all along: the router, whose only handlers are
// the processor's, does not close (Watermill closes a router whose
// handlers have all stopped).
func testProcessorPause(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("pause")
	cfg := procConfig(name, 2)
	cfg.Categories = []string{name}
	cfg.Subscriber.LeaseTTL = time.Minute // a lease not given back would hold the test up
	envs := appendSpread(t, s, name, 4, 8)
	var handled handledCounts
	pr := startProcessor(t, m, src, cfg, func(_ context.Context, env events.Envelope) error {
		handled.count(env)
		return nil
	})
	awaitPosition(t, pr.p, envs[len(envs)-1].Token)

	resume, err := pr.p.Pause(t.Context())
	require.NoError(t, err)
	// Every lease is free once Pause returns: move the checkpoints back to
	// the start of the feed under them.
	cps := src.Checkpoints()
	for _, cp := range pr.p.CheckpointNames() {
		l, err := cps.Acquire(t.Context(), cp, "operator", time.Minute)
		require.NoError(t, err, "the lease of %s was not given back by Pause", cp)
		u, err := cps.Begin(t.Context())
		require.NoError(t, err)
		require.NoError(t, u.Commit(t.Context(), feed.Move{Lease: l, Position: events.Token{}}))
		require.NoError(t, cps.Release(t.Context(), l))
	}
	require.Eventually(t, func() bool {
		for _, ps := range pr.p.Status().Partitions {
			if ps.State != feed.PartitionIdle {
				return false
			}
		}
		return true
	}, waitTimeout, time.Millisecond, "the paused partitions do not report idle")

	resume()
	resume() // a second call does nothing
	require.Eventually(t, func() bool { return handled.atLeast(envs, 2) }, waitTimeout, time.Millisecond,
		"the resumed processor did not deliver again from the moved checkpoints")
	awaitPosition(t, pr.p, envs[len(envs)-1].Token)
	if m == onRouter {
		select {
		case <-pr.done:
			t.Fatalf("the router closed during the pause (Run returned %v)", pr.runErr)
		default:
		}
	}
}

// testProcessorCloseOnRunningRouter: Processor.Close of a processor
// mounted on a router that goes on running (another handler keeps it)
// returns once its partitions' leases are released and it has left its
// group, so another process (or an operation on the checkpoints) takes
// them at once; the router keeps running. Close may be called from one of
// the processor's own handlers: it does not wait for that handler, whose
// unit never commits, and the event is delivered again by the next holder.
func testProcessorCloseOnRunningRouter(t *testing.T, s events.Store, src feed.Source) {
	// mount runs p on a router beside a handler of another subscriber.
	mount := func(t *testing.T, p *feed.Processor) (*message.Router, <-chan error) {
		t.Helper()
		other := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
		t.Cleanup(func() { _ = other.Close() })
		r, err := message.NewRouter(message.RouterConfig{CloseTimeout: waitTimeout}, watermill.NopLogger{})
		require.NoError(t, err)
		r.AddConsumerHandler("other", "other", other, func(*message.Message) error { return nil })
		require.NoError(t, p.AddHandlers(r))
		done := make(chan error, 1)
		go func() { done <- r.Run(context.WithoutCancel(t.Context())) }()
		select {
		case <-r.Running():
		case err := <-done:
			t.Fatalf("the router stopped before running: %v", err)
		}
		t.Cleanup(func() { _ = r.Close() })
		return r, done
	}
	requireRunning := func(t *testing.T, r *message.Router, done <-chan error) {
		t.Helper()
		select {
		case err := <-done:
			t.Fatalf("the router closed with the processor (Run returned %v)", err)
		default:
		}
		require.False(t, r.IsClosed(), "the router closed with the processor")
	}

	t.Run("close", func(t *testing.T) {
		name, p, r, done := caughtUpOnRouter(t, s, src, "closemounted", mount)

		require.NoError(t, p.Close())
		requireLeasesReleased(t, src, p)
		members, err := src.Checkpoints().Heartbeat(t.Context(), name, "another-process", time.Minute)
		require.NoError(t, err)
		require.Equal(t, []string{"another-process"}, members, "Close returned but the processor is still a member")
		requireRunning(t, r, done)
	})

	t.Run("while-router-closes", func(t *testing.T) {
		_, p, r, done := caughtUpOnRouter(t, s, src, "closewithrouter", mount)

		// The two closes race: neither waits for the other for good.
		routerClosed := make(chan error, 1)
		go func() { routerClosed <- r.Close() }()
		require.NoError(t, p.Close())
		select {
		case err := <-routerClosed:
			require.NoError(t, err)
		case <-time.After(waitTimeout):
			t.Fatal("the router's Close did not return")
		}
		require.NoError(t, <-done)
		requireLeasesReleased(t, src, p)
	})

	t.Run("from-handler", func(t *testing.T) {
		name := uniqueName("closeinhandler")
		cfg := procConfig(name, 1)
		cfg.Categories = []string{name}
		// Close waiting for its own caller would return after LeaseTTL
		// at best: far past waitTimeout.
		cfg.Subscriber.LeaseTTL = time.Minute
		envs := appendSpread(t, s, name, 1, 3)
		closed := make(chan struct{})
		var once sync.Once
		var p *feed.Processor
		p, err := feed.NewProcessor(src, cfg, func(ctx context.Context, env events.Envelope) error {
			if err := applyOnce(ctx, name, env); err != nil {
				return err
			}
			once.Do(func() {
				_ = p.Close()
				close(closed)
			})
			return nil
		})
		require.NoError(t, err)
		t.Cleanup(func() { _ = p.Close() })
		r, done := mount(t, p)
		select {
		case <-closed:
		case <-time.After(waitTimeout):
			t.Fatal("Close called from a handler did not return")
		}
		requireLeasesReleased(t, src, p)
		pos, err := p.Position(t.Context())
		require.NoError(t, err)
		require.True(t, pos.IsZero(), "the unit of the handler that closed the processor committed")
		requireRunning(t, r, done)

		// The next holder applies every event once: the closing
		// handler's writes never committed.
		next := startProcessor(t, onRouter, src, cfg, func(ctx context.Context, env events.Envelope) error {
			return applyOnce(ctx, name, env)
		})
		awaitPosition(t, next.p, envs[len(envs)-1].Token)
		requireAppliedOnce(t, src, name, envs)
	})
}

// caughtUpOnRouter builds a processor of two partitions over events of
// its own category, runs it on a router by run, and waits until it has
// applied them all. Its leases outlive the test (LeaseTTL a minute): one
// not released would hold the test up rather than expire.
func caughtUpOnRouter(t *testing.T, s events.Store, src feed.Source, prefix string,
	run func(*testing.T, *feed.Processor) (*message.Router, <-chan error),
) (name string, p *feed.Processor, r *message.Router, done <-chan error) {
	t.Helper()
	name = uniqueName(prefix)
	cfg := procConfig(name, 2)
	cfg.Categories = []string{name} // the store is shared with other subtests
	cfg.Subscriber.LeaseTTL = time.Minute
	envs := appendSpread(t, s, name, 4, 8)
	p, err := feed.NewProcessor(src, cfg, func(ctx context.Context, env events.Envelope) error {
		return applyOnce(ctx, name, env)
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	r, done = run(t, p)
	awaitPosition(t, p, envs[len(envs)-1].Token)
	return name, p, r, done
}

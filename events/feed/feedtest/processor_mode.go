package feedtest

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// mode is how a test's processors deliver: mounted on a router of their
// own (AddHandlers), or straight to the handler (Processor.Run). Only the
// delivery differs, so every processor behaviour must hold in both.
type mode string

const (
	onRouter mode = "router"
	direct   mode = "direct"
)

var modes = []mode{onRouter, direct}

// processorTest is one behaviour of feed.Processor, run once per mode.
type processorTest struct {
	name string
	fn   func(t *testing.T, m mode, s events.Store, src feed.Source)
}

// runProcessorTests runs every processor test in every mode, each on a
// fresh store: "<test>/router" and "<test>/direct".
func runProcessorTests(t *testing.T, tests []processorTest, newSource NewSourceFunc) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, m := range modes {
				t.Run(string(m), func(t *testing.T) {
					t.Parallel()
					s, src := newSource(t)
					tc.fn(t, m, s, src)
				})
			}
		})
	}
}

// procRun is one "process" running a processor, on its own router or by
// Processor.Run.
type procRun struct {
	t      *testing.T
	m      mode
	p      *feed.Processor
	cancel context.CancelFunc
	done   chan struct{}
	// runErr is what Processor.Run (direct mode) or the router's Run
	// returned, set before done is closed.
	runErr error
	// checked is set once stop has checked the router's runErr.
	checked bool
}

func startProcessor(t *testing.T, m mode, src feed.Source, cfg *feed.ProcessorConfig, h feed.Handler) *procRun {
	t.Helper()
	return startProcessorWith(t, m, src, cfg, h)
}

// startProcessorWith is startProcessor with middleware on the router
// (none applies in direct mode, which has no router).
func startProcessorWith(t *testing.T, m mode, src feed.Source, cfg *feed.ProcessorConfig, h feed.Handler, mw ...message.HandlerMiddleware) *procRun {
	t.Helper()
	p, err := feed.NewProcessor(src, cfg, h)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	pr := &procRun{t: t, m: m, p: p, cancel: cancel, done: make(chan struct{})}
	switch m {
	case onRouter:
		r, err := message.NewRouter(message.RouterConfig{CloseTimeout: waitTimeout}, watermill.NopLogger{})
		require.NoError(t, err)
		r.AddMiddleware(mw...)
		require.NoError(t, p.AddHandlers(r))
		go func() {
			defer close(pr.done)
			pr.runErr = r.Run(ctx)
		}()
		select {
		case <-r.Running():
		case <-pr.done:
			cancel()
			_ = p.Close()
			t.Fatalf("the router of processor %s stopped before running: %v", p.Name(), pr.runErr)
		}
	case direct:
		go func() {
			defer close(pr.done)
			pr.runErr = p.Run(ctx)
		}()
	default:
		t.Fatalf("unknown mode %q", m)
	}
	t.Cleanup(pr.stop)
	return pr
}

// stop ends the run's context, waits for the router or Run to return and
// closes the processor. A router's Run must have returned nil (direct
// mode's Run error is the tests' to check). It may be called more than
// once.
func (pr *procRun) stop() {
	pr.cancel()
	if pr.awaitDone() && pr.m == onRouter && !pr.checked {
		pr.checked = true
		if pr.runErr != nil {
			pr.t.Errorf("the router of processor %s: Run returned %v", pr.p.Name(), pr.runErr)
		}
	}
	_ = pr.p.Close()
}

// awaitDone waits for the router or Run to return, and says whether it
// did.
func (pr *procRun) awaitDone() bool {
	select {
	case <-pr.done:
		return true
	case <-time.After(waitTimeout):
		pr.t.Errorf("processor %s did not stop within %s", pr.p.Name(), waitTimeout)
		return false
	}
}

// active returns how many partitions pr is delivering.
func (pr *procRun) active() int {
	n := 0
	for _, ps := range pr.p.Status().Partitions {
		if ps.State == feed.PartitionActive {
			n++
		}
	}
	return n
}

package feed_test

import (
	"context"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// TestProcessorDeliversOneWay: a processor mounted on a router cannot be
// mounted again (on another router or the same) or Run, and one that runs
// cannot be mounted or run a second time; any of these would run two
// consumers per partition, delivering and committing every event twice.
func TestProcessorDeliversOneWay(t *testing.T) {
	t.Parallel()
	noop := func(context.Context, events.Envelope) error { return nil }
	newProc := func() *feed.Processor {
		_, src := newMemstore(t)
		p, err := feed.NewProcessor(src, &feed.ProcessorConfig{Name: "one-way"}, noop)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, p.Close()) })
		return p
	}
	newRouter := func() *message.Router {
		r, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
		require.NoError(t, err)
		return r
	}

	mounted := newProc()
	first := newRouter()
	require.NoError(t, mounted.AddHandlers(first))
	require.Error(t, mounted.AddHandlers(newRouter()), "AddHandlers on a second router")
	require.Error(t, mounted.AddHandlers(first), "AddHandlers twice on one router")
	require.Error(t, mounted.Run(t.Context()), "Run after AddHandlers")

	running := newProc()
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // Run claims the processor first, then returns at once
	require.ErrorIs(t, running.Run(ctx), context.Canceled)
	require.Error(t, running.AddHandlers(newRouter()), "AddHandlers after Run")
	require.Error(t, running.Run(t.Context()), "a second Run")
}

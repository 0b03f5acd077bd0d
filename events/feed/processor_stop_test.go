package feed_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
)

// TestRouterCloseStopsTheProcessor: once the router a processor is mounted
// on has closed, none of the processor's goroutines runs any more (its
// membership heartbeat and its search for replay requests included),
// though Processor.Close was never called. Not parallel: goleak must not
// see other tests' goroutines.
func TestRouterCloseStopsTheProcessor(t *testing.T) {
	st, err := memstore.New(nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, st.Close()) }()
	ignore := goleak.IgnoreCurrent()

	quiet := slog.New(slog.DiscardHandler)
	var handled atomic.Int64
	p, err := feed.NewProcessor(st, &feed.ProcessorConfig{
		Name: "router-close", Partitions: 2,
		Subscriber: feed.SubscriberConfig{LeaseTTL: time.Second, Logger: quiet},
		Logger:     quiet,
	}, func(context.Context, events.Envelope) error {
		handled.Add(1)
		return nil
	})
	require.NoError(t, err)
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	require.NoError(t, p.AddHandlers(r))
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	<-r.Running()
	for i := range 3 {
		_, err := st.Append(t.Context(), "thing-"+string(rune('a'+i)), events.AnyVersion,
			events.Event{Data: events.Raw{Type: "thing.done", Payload: []byte(`{}`)}})
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return handled.Load() == 3 }, 10*time.Second, time.Millisecond)

	require.NoError(t, r.Close())
	require.NoError(t, <-done)
	goleak.VerifyNone(t, ignore)
}

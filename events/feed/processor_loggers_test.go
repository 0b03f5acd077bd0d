package feed_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
)

// logSink is a log buffer safe for the processor's goroutines.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *logSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// A processor's partitions log their subscriber lines (leases) to
// Subscriber.Logger when it is set, and the processor's own lines
// (handler failures) to Logger.
func TestProcessorSubscriberLoggerGetsTheLeaseLines(t *testing.T) {
	t.Parallel()
	store, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, store.Close()) })
	ctx := t.Context()
	_, err = store.Append(ctx, "s-1", events.AnyVersion, events.Event{Data: events.Raw{Type: "t", Payload: []byte(`{}`)}})
	require.NoError(t, err)

	var subs, own logSink
	failed := make(chan struct{})
	var once sync.Once
	p, err := feed.NewProcessor(store, &feed.ProcessorConfig{
		Name: "logs", Partitions: 2,
		Subscriber: feed.SubscriberConfig{
			Logger:         slog.New(slog.NewTextHandler(&subs, nil)),
			NackBackoffMin: time.Millisecond, NackBackoffMax: 2 * time.Millisecond,
		},
		Logger: slog.New(slog.NewTextHandler(&own, nil)),
	}, func(context.Context, events.Envelope) error {
		first := false
		once.Do(func() { first = true; close(failed) })
		if first {
			return errors.New("fails once")
		}
		return nil
	})
	require.NoError(t, err)
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	select {
	case <-failed:
	case <-rctx.Done():
		t.Fatal("the handler was never called")
	}
	require.Eventually(t, func() bool {
		return strings.Contains(own.String(), "handler failed")
	}, 30*time.Second, 5*time.Millisecond, "the processor's lines: %s", own.String())
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	require.NoError(t, p.Close())
	require.Contains(t, subs.String(), "lease acquired", "the subscriber's lines")
	require.NotContains(t, own.String(), "lease acquired", "the subscriber's lines went to the processor's logger")
	require.NotContains(t, subs.String(), "handler failed", "the processor's lines went to the subscriber's logger")
}

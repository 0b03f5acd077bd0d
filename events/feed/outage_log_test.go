package feed_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// flakySource fails its first `failures` reads, as a source whose database
// is down for a while.
type flakySource struct {
	feed.Source
	failures atomic.Int64
}

func (s *flakySource) ReadFeed(ctx context.Context, after events.Token, f feed.Filter, limit int) (feed.Batch, error) {
	if s.failures.Add(-1) >= 0 {
		return feed.Batch{}, errors.New("connection refused")
	}
	return s.Source.ReadFeed(ctx, after, f, limit)
}

// recordingHandler keeps the level and message of every log record.
type recordingHandler struct {
	mu   sync.Mutex
	recs []string
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Level.String()+" "+r.Message)
	h.mu.Unlock()
	return nil
}
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

func (h *recordingHandler) count(prefix string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, r := range h.recs {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

// A long outage is one warning, not one per retry, and its end is reported
// once, with the consumer degraded in between.
func TestRepeatedReadFailuresWarnOncePerOutage(t *testing.T) {
	t.Parallel()
	s, src := newMemstore(t)
	flaky := &flakySource{Source: src}
	const failures = 12
	flaky.failures.Store(failures)
	logs := &recordingHandler{}
	sub, err := feed.NewSubscriber(flaky, &feed.SubscriberConfig{
		ConsumerName:      "outage",
		PendingBackoffMin: time.Millisecond,
		PendingBackoffMax: 2 * time.Millisecond,
		// Read retries back off up to the fallback poll interval.
		FallbackPollInterval: 2 * time.Millisecond,
		Logger:               slog.New(logs),
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, sub.Close()) }()
	_, err = s.Append(t.Context(), "order-1", events.NoStream, events.Event{Data: events.Raw{Type: "t", Payload: json.RawMessage(`{}`)}})
	require.NoError(t, err)

	ch, err := sub.Subscribe(t.Context(), feed.TopicAll)
	require.NoError(t, err)
	var msg *message.Message
	select {
	case msg = <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("the event was never delivered after the outage")
	}
	msg.Ack()
	require.LessOrEqual(t, flaky.failures.Load(), int64(0), "every planned failure happened")

	require.Equal(t, 1, logs.count("WARN feed: read failed"), "one warning for the whole outage: %v", logs.recs)
	require.Equal(t, failures-1, logs.count("DEBUG feed: read failed"), "the other failures are at debug level")
	require.Equal(t, 1, logs.count("INFO feed: the source answers again"), "the end of the outage is reported once")
	st := sub.Status()
	require.Len(t, st, 1)
	require.False(t, st[0].Degraded(), "the consumer is no longer degraded")
	require.GreaterOrEqual(t, st[0].Failures, uint64(failures))
}

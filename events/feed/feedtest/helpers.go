package feedtest

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/signal"
)

// NewSourceFunc returns a fresh, empty store and the feed.Source reading it
// (usually the same value), closed with t.Cleanup.
type NewSourceFunc func(t *testing.T) (events.Store, feed.Source)

// waitTimeout bounds every wait of the suite. It is generous because
// PostgreSQL under a parallel test run can be slow; passing tests never
// wait for it.
const waitTimeout = 15 * time.Second

// eventType is the type name of the suite's raw events.
const eventType = "feedtest.thing"

// quietLogger drops the subscribers' logs; the assertions say what failed.
var quietLogger = slog.New(slog.DiscardHandler)

// commits records the checkpoint commits reported by OnCommitted, so tests
// can wait for progress instead of sleeping.
type commits struct {
	mu   sync.Mutex
	last map[string]events.Token
	n    int
	b    signal.Broadcast
}

func newCommits() *commits { return &commits{last: map[string]events.Token{}} }

// record is a SubscriberConfig.OnCommitted.
func (c *commits) record(name string, tok events.Token) {
	c.mu.Lock()
	c.last[name] = tok
	c.n++
	c.mu.Unlock()
	c.b.Notify()
}

// count returns how many commits were recorded.
func (c *commits) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// await waits until name's checkpoint was committed at or past tok.
func (c *commits) await(t *testing.T, name string, tok events.Token) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		ch := c.b.C()
		c.mu.Lock()
		got, ok := c.last[name]
		c.mu.Unlock()
		if ok && !got.Before(tok) {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("checkpoint %q was not committed at %s within %s (last commit: %s)", name, tok, waitTimeout, got)
		}
	}
}

// config is the suite's SubscriberConfig: quick standby retries and nack
// backoff, quiet logs, commits recorded in cm.
func config(name string, cm *commits) *feed.SubscriberConfig {
	return &feed.SubscriberConfig{
		ConsumerName:   name,
		LeaseTTL:       5 * time.Second,
		RenewInterval:  50 * time.Millisecond,
		NackBackoffMin: time.Millisecond,
		NackBackoffMax: 10 * time.Millisecond,
		Logger:         quietLogger,
		OnCommitted:    cm.record,
	}
}

// newSubscriber builds a Subscriber that is closed when the test ends.
func newSubscriber(t *testing.T, src feed.Source, cfg *feed.SubscriberConfig) *feed.Subscriber {
	t.Helper()
	sub, err := feed.NewSubscriber(src, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sub.Close()) })
	return sub
}

func subscribe(t *testing.T, sub *feed.Subscriber, topic string) <-chan *message.Message {
	t.Helper()
	ch, err := sub.Subscribe(t.Context(), topic)
	require.NoError(t, err)
	return ch
}

// receive returns the next message or fails.
func receive(t *testing.T, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case msg, ok := <-ch:
		require.True(t, ok, "the message channel was closed")
		return msg
	case <-time.After(waitTimeout):
		t.Fatalf("no message within %s", waitTimeout)
		return nil
	}
}

// requireNoMessage fails if a message is ready on ch right now.
func requireNoMessage(t *testing.T, ch <-chan *message.Message, why string) {
	t.Helper()
	select {
	case msg, ok := <-ch:
		if ok {
			t.Fatalf("%s, but got message %s (%s %s)", why, msg.UUID, msg.Metadata.Get(feed.MetaStreamID), msg.Metadata.Get(feed.MetaVersion))
		}
	default:
	}
}

// requireClosed waits for ch to be closed, acking nothing it drains.
func requireClosed(t *testing.T, ch <-chan *message.Message) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		select {
		case msg, ok := <-ch:
			if !ok {
				return
			}
			msg.Nack()
		case <-deadline:
			t.Fatalf("the message channel was not closed within %s", waitTimeout)
		}
	}
}

// thing is the payload of the suite's events.
func thing(n int) events.Event {
	return events.Event{Data: events.Raw{Type: eventType, Payload: json.RawMessage(fmt.Sprintf(`{"n": %d}`, n))}}
}

// appendTo appends one event per n to stream and returns their results.
func appendTo(t *testing.T, s events.Store, stream string, ns ...int) events.AppendResult {
	t.Helper()
	evs := make([]events.Event, len(ns))
	for i, n := range ns {
		evs[i] = thing(n)
	}
	res, err := s.Append(t.Context(), stream, events.AnyVersion, evs...)
	require.NoError(t, err)
	return res
}

// awaitAll waits until ReadAll shows n events and returns them: on
// PostgreSQL a committed event can be held back a moment by another open
// transaction.
func awaitAll(t *testing.T, s events.Store, n int) []events.Envelope {
	t.Helper()
	var got []events.Envelope
	require.Eventually(t, func() bool {
		var err error
		got, err = s.ReadAll(context.WithoutCancel(t.Context()), events.Token{}, n+1)
		return err == nil && len(got) >= n
	}, waitTimeout, 5*time.Millisecond, "ReadAll never showed %d events", n)
	require.Len(t, got, n, "ReadAll shows more events than the test appended")
	return got
}

// ids returns the event ids of envs.
func ids(envs []events.Envelope) []string {
	out := make([]string, len(envs))
	for i, e := range envs {
		out[i] = e.ID
	}
	return out
}

// uniqueName returns a consumer name no other test uses.
func uniqueName(prefix string) string { return prefix + "-" + uuid.NewString() }

package converge_test

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/projections"
)

// logSpy is a slog.Handler keeping every record it is handed (at every
// level), with the attributes its loggers were given by With.
type logSpy struct {
	mu      *sync.Mutex
	records *[]spied
	attrs   []slog.Attr
}

type spied struct {
	msg   string
	attrs map[string]string
}

func newLogSpy() logSpy { return logSpy{mu: &sync.Mutex{}, records: &[]spied{}} }

func (logSpy) Enabled(context.Context, slog.Level) bool { return true }

func (s logSpy) Handle(_ context.Context, r slog.Record) error {
	rec := spied{msg: r.Message, attrs: map[string]string{}}
	for _, a := range s.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	*s.records = append(*s.records, rec)
	return nil
}

func (s logSpy) WithAttrs(as []slog.Attr) slog.Handler {
	s.attrs = append(slices.Clip(s.attrs), as...)
	return s
}

func (s logSpy) WithGroup(string) slog.Handler { return s }

// where returns the value of attribute key in each record with message
// msg.
func (s logSpy) where(msg, key string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range *s.records {
		if r.msg == msg {
			out = append(out, r.attrs[key])
		}
	}
	return out
}

// leaseAcquired is what a feed subscriber logs, under its consumer name,
// when it starts delivering.
const leaseAcquired = "feed: lease acquired, delivering"

// subscriberShop is the shop with its sagas in two partitions, and the
// consumer names of the saga partitions and the command handler, whose
// feed subscribers Config.Subscriber tunes.
func subscriberShop(t *testing.T, store converge.Store) (*converge.Config, func() *converge.Client, []string) {
	t.Helper()
	var client *converge.Client
	cfg := shop(store, func(name string) *projections.View { return client.Projections().View(name) })
	cfg.SagaPartitions = 2
	cfg.Subscriber = feed.SubscriberConfig{LeaseTTL: time.Minute}
	consumers := []string{
		converge.DefaultSagaProcessor + "#0/2", converge.DefaultSagaProcessor + "#1/2",
		"command.charge-card/cmd.shop.charge_card",
	}
	build := func() *converge.Client {
		t.Helper()
		var err error
		client, err = converge.NewClient(store, cfg)
		require.NoError(t, err)
		return client
	}
	return cfg, build, consumers
}

// TestSubscriberLoggerDefaultsToLogger: the feed subscribers of the sagas
// and of the command handlers log to Config.Logger when
// Config.Subscriber.Logger is left nil.
func TestSubscriberLoggerDefaultsToLogger(t *testing.T) {
	t.Parallel()
	store, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	spy := newLogSpy()
	cfg, build, consumers := subscriberShop(t, store)
	cfg.Logger = slog.New(spy)
	require.Nil(t, cfg.Subscriber.Logger)
	run(t, build())
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got := spy.where(leaseAcquired, "consumer")
		for _, name := range consumers {
			assert.Contains(c, got, name)
		}
	}, 30*time.Second, 5*time.Millisecond, "a subscriber did not log to Config.Logger")
}

// TestSubscriberLoggerReceivesTheSubscribersLines: a Config.Subscriber.Logger
// of its own receives the lines of the sagas' and the command handlers'
// feed subscribers, and Config.Logger none of them.
func TestSubscriberLoggerReceivesTheSubscribersLines(t *testing.T) {
	t.Parallel()
	store, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	general, subscribers := newLogSpy(), newLogSpy()
	cfg, build, consumers := subscriberShop(t, store)
	cfg.Logger = slog.New(general)
	cfg.Subscriber.Logger = slog.New(subscribers)
	run(t, build())
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got := subscribers.where(leaseAcquired, "consumer")
		for _, name := range consumers {
			assert.Contains(c, got, name)
		}
	}, 30*time.Second, 5*time.Millisecond, "a subscriber did not log to Config.Subscriber.Logger")
	for _, name := range consumers {
		require.NotContains(t, general.where(leaseAcquired, "consumer"), name, "a subscriber logged to Config.Logger")
	}
}

// TestLoggerDefaultsToSlogDefault: with Config.Logger left nil the
// client's parts log to slog.Default(): its router and every feed
// subscriber (the sagas', the command handler's, the projection's). Not parallel: it replaces the process's default logger
// while it runs, and the parallel tests wait for it.
func TestLoggerDefaultsToSlogDefault(t *testing.T) {
	prev := slog.Default()
	t.Cleanup(func() { slog.SetDefault(prev) })
	spy := newLogSpy()
	slog.SetDefault(slog.New(spy))

	store, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	cfg, build, consumers := subscriberShop(t, store)
	cfg.Logger = nil
	client := build()
	run(t, client)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got := spy.where(leaseAcquired, "consumer")
		for _, name := range append(consumers, "order_status") {
			assert.Contains(c, got, name)
		}
	}, 30*time.Second, 5*time.Millisecond, "a subscriber did not log to slog.Default()")
	stop(t, client)
	require.Contains(t, spy.where("Closing router", "component"), "converge.router", "the router did not log to slog.Default()")
}

package feed_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
)

func TestNewSubscriberValidatesConfig(t *testing.T) {
	t.Parallel()
	src, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = src.Close() })

	for _, tc := range []struct {
		name  string
		cfg   *feed.SubscriberConfig
		field string
	}{
		{"nil config", nil, "ConsumerName"},
		{"no name", &feed.SubscriberConfig{}, "ConsumerName"},
		{"negative TTL", &feed.SubscriberConfig{ConsumerName: "c", LeaseTTL: -time.Second}, "LeaseTTL"},
		{"renew not below TTL", &feed.SubscriberConfig{ConsumerName: "c", LeaseTTL: time.Second, RenewInterval: time.Second}, "RenewInterval"},
		{"negative batch", &feed.SubscriberConfig{ConsumerName: "c", BatchSize: -1}, "BatchSize"},
		{"negative fallback poll", &feed.SubscriberConfig{ConsumerName: "c", FallbackPollInterval: -1}, "FallbackPollInterval"},
		{"negative safety poll", &feed.SubscriberConfig{ConsumerName: "c", SafetyPollInterval: -1}, "SafetyPollInterval"},
		{"pending max below min", &feed.SubscriberConfig{ConsumerName: "c", PendingBackoffMin: time.Second, PendingBackoffMax: time.Millisecond}, "PendingBackoffMax"},
		{"nack max below min", &feed.SubscriberConfig{ConsumerName: "c", NackBackoffMin: time.Second, NackBackoffMax: time.Millisecond}, "NackBackoffMax"},
		{"negative nack min", &feed.SubscriberConfig{ConsumerName: "c", NackBackoffMin: -1}, "NackBackoffMin"},
		{"partition out of range", &feed.SubscriberConfig{ConsumerName: "c", Partition: feed.Partition{Index: 4, Count: 4}}, "Partition"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := feed.NewSubscriber(src, tc.cfg)
			require.ErrorContains(t, err, "SubscriberConfig."+tc.field)
		})
	}

	t.Run("a lease shorter than MinLeaseTTL is refused by name", func(t *testing.T) {
		t.Parallel()
		// Left alone, RenewInterval defaults to LeaseTTL/3, zero for the
		// shortest leases: the error must name LeaseTTL, not it.
		for _, ttl := range []time.Duration{1, 2, 3, feed.MinLeaseTTL / 2, feed.MinLeaseTTL - 1} {
			_, err := feed.NewSubscriber(src, &feed.SubscriberConfig{ConsumerName: "c", LeaseTTL: ttl})
			require.ErrorContains(t, err, "SubscriberConfig.LeaseTTL is "+ttl.String(), "LeaseTTL %s", ttl)
			require.ErrorContains(t, err, feed.MinLeaseTTL.String())
		}
		sub, err := feed.NewSubscriber(src, &feed.SubscriberConfig{ConsumerName: "c", LeaseTTL: feed.MinLeaseTTL})
		require.NoError(t, err)
		require.NoError(t, sub.Close())
	})
	t.Run("defaults are valid", func(t *testing.T) {
		t.Parallel()
		sub, err := feed.NewSubscriber(src, &feed.SubscriberConfig{ConsumerName: "c"})
		require.NoError(t, err)
		require.NoError(t, sub.Close())
	})
	t.Run("a large minimum raises the default maximum", func(t *testing.T) {
		t.Parallel()
		sub, err := feed.NewSubscriber(src, &feed.SubscriberConfig{ConsumerName: "c", NackBackoffMin: time.Minute, PendingBackoffMin: time.Second})
		require.NoError(t, err)
		require.NoError(t, sub.Close())
	})
	t.Run("no source", func(t *testing.T) {
		t.Parallel()
		_, err := feed.NewSubscriber(nil, &feed.SubscriberConfig{ConsumerName: "c"})
		require.ErrorContains(t, err, "Source")
	})
}

func TestNewPublisherValidatesConfig(t *testing.T) {
	t.Parallel()
	store, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })

	_, err = feed.NewPublisher(store, &feed.PublisherConfig{Encoding: "gzip"})
	require.ErrorContains(t, err, "PublisherConfig.Encoding")
	_, err = feed.NewPublisher(nil, nil)
	require.ErrorContains(t, err, "events.Store")
	pub, err := feed.NewPublisher(store, nil)
	require.NoError(t, err)
	require.NoError(t, pub.Close())
	require.NoError(t, pub.Close())
}

func TestCheckpointName(t *testing.T) {
	t.Parallel()
	require.Equal(t, "projection", feed.CheckpointName("projection", ""))
	require.Equal(t, "projection", feed.CheckpointName("projection", feed.TopicAll))
	require.Equal(t, "projection/order", feed.CheckpointName("projection", "order"))
}

// A processor partitions its subscribers itself: a partition set by hand
// is refused rather than silently replaced.
func TestNewProcessorRefusesASubscriberPartition(t *testing.T) {
	t.Parallel()
	src, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = src.Close() })
	_, err = feed.NewProcessor(src, &feed.ProcessorConfig{
		Name: "p", Subscriber: feed.SubscriberConfig{Partition: feed.Partition{Index: 1, Count: 2}},
	}, func(context.Context, events.Envelope) error { return nil })
	require.ErrorContains(t, err, "ProcessorConfig.Subscriber.Partition is set")
}

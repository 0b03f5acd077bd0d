package feed_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
)

// TestNewProcessorValidatesConfig checks every refusal ProcessorConfig
// documents: each names the field, and a negative duration or count is
// refused rather than becoming a default (a negative HaltCheckInterval
// would re-read the halt rows in a busy loop).
func TestNewProcessorValidatesConfig(t *testing.T) {
	t.Parallel()
	src, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = src.Close() })
	noop := func(context.Context, events.Envelope) error { return nil }

	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	negDur := func() time.Duration { return -time.Duration(1 + rng.Int64N(int64(time.Hour))) }
	negInt := func() int { return -1 - rng.IntN(1<<20) }

	for range 20 {
		for _, tc := range []struct {
			name string
			cfg  feed.ProcessorConfig
			want string
		}{
			{"no name", feed.ProcessorConfig{Name: " \t"}, "ProcessorConfig.Name is empty"},
			{"hash in name", feed.ProcessorConfig{Name: "a#b"}, "ProcessorConfig.Name"},
			{"NUL in name", feed.ProcessorConfig{Name: "a\x00b"}, "ProcessorConfig.Name"},
			{"negative partitions", feed.ProcessorConfig{Name: "p", Partitions: negInt()}, "ProcessorConfig.Partitions"},
			{"too many partitions", feed.ProcessorConfig{Name: "p", Partitions: feed.MaxPartitions + 1 + rng.IntN(1000)}, "ProcessorConfig.Partitions"},
			{"negative commit batch", feed.ProcessorConfig{Name: "p", CommitBatch: negInt()}, "ProcessorConfig.CommitBatch"},
			{"negative attempts", feed.ProcessorConfig{Name: "p", MaxAttempts: negInt()}, "ProcessorConfig.MaxAttempts"},
			{"unknown policy", feed.ProcessorConfig{Name: "p", OnFailure: feed.OnFailure(2 + rng.IntN(100))}, "ProcessorConfig.OnFailure"},
			{"gate without waiter", feed.ProcessorConfig{Name: "p", Gate: func(context.Context, events.Envelope) ([]string, events.Token, error) {
				return nil, events.Token{}, nil
			}}, "Waiter is nil"},
			{"negative gate timeout", feed.ProcessorConfig{Name: "p", GateTimeout: negDur()}, "ProcessorConfig.GateTimeout"},
			{"negative halt check", feed.ProcessorConfig{Name: "p", HaltCheckInterval: negDur()}, "ProcessorConfig.HaltCheckInterval"},
			{"negative replay check", feed.ProcessorConfig{Name: "p", ReplayCheckInterval: negDur()}, "ProcessorConfig.ReplayCheckInterval"},
			{"bad partition key", feed.ProcessorConfig{Name: "p", PartitionKey: "tenant"}, "partition key"},
			{"subscriber name", feed.ProcessorConfig{Name: "p", Subscriber: feed.SubscriberConfig{ConsumerName: "x"}}, "Subscriber.ConsumerName is set"},
			{"subscriber commit batch", feed.ProcessorConfig{Name: "p", Subscriber: feed.SubscriberConfig{CommitBatch: 1 + rng.IntN(10)}}, "Subscriber.CommitBatch is set"},
			{"subscriber on committed", feed.ProcessorConfig{Name: "p", Subscriber: feed.SubscriberConfig{OnCommitted: func(string, events.Token) {}}}, "Subscriber.OnCommitted is set"},
			{"bad subscriber", feed.ProcessorConfig{Name: "p", Subscriber: feed.SubscriberConfig{LeaseTTL: negDur()}}, "ProcessorConfig.Subscriber: feed: SubscriberConfig.LeaseTTL"},
		} {
			cfg := tc.cfg
			_, err := feed.NewProcessor(src, &cfg, noop)
			require.ErrorContains(t, err, tc.want, tc.name)
		}
	}

	for _, cfg := range []*feed.ProcessorConfig{
		{Name: "p"},
		{Name: "p", Partitions: feed.MaxPartitions, PartitionKey: feed.ByCorrelation, OnFailure: feed.DeadLetter},
	} {
		p, err := feed.NewProcessor(src, cfg, noop)
		require.NoError(t, err, "the defaults and the bounds are valid")
		require.NoError(t, p.Close())
	}
	_, err = feed.NewProcessor(nil, &feed.ProcessorConfig{Name: "p"}, noop)
	require.ErrorContains(t, err, "Source")
	_, err = feed.NewProcessor(src, &feed.ProcessorConfig{Name: "p"}, nil)
	require.ErrorContains(t, err, "Handler")
}

// TestPartitionNameFollowsItsFormat checks PartitionName's documented
// form over random names and splits: the bare name when the processor is
// not split, else "name#index/count", distinct for every partition and
// never the name of an unsplit processor (whose names cannot hold '#').
func TestPartitionNameFollowsItsFormat(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	for range 2000 {
		name := fmt.Sprintf("p%d", rng.IntN(1000))
		count := rng.IntN(feed.MaxPartitions + 1)
		if count <= 1 {
			require.Equal(t, name, feed.PartitionName(name, rng.IntN(2), count))
			continue
		}
		seen := map[string]bool{}
		for _, i := range []int{0, rng.IntN(count), count - 1} {
			got := feed.PartitionName(name, i, count)
			require.Equal(t, fmt.Sprintf("%s#%d/%d", name, i, count), got)
			seen[got] = true
		}
		require.False(t, seen[name])
	}
}

// TestSubscribeRefusesControlCharacters: a topic is a stream category, so
// a control character (never valid in a stream id) is refused at once
// rather than following a category no stream can be in.
func TestSubscribeRefusesControlCharacters(t *testing.T) {
	t.Parallel()
	src, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = src.Close() })
	sub, err := feed.NewSubscriber(src, &feed.SubscriberConfig{ConsumerName: "c"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	for range 200 {
		ctl := rune(rng.IntN(0x20))
		if rng.IntN(8) == 0 {
			ctl = 0x7f
		}
		topic := "order" + string(ctl) + "x"
		_, err := sub.Subscribe(t.Context(), topic)
		require.ErrorContains(t, err, "control character", "%q", topic)
	}
}

// randomBadName returns a category or type name that holds NUL or bytes
// that are not UTF-8, which no stream id or type name does.
func randomBadName(r *rand.Rand) string {
	for {
		good := []rune([]string{"order", "é-🚀", "a_b", ""}[r.IntN(4)])
		at := r.IntN(len(good) + 1)
		bad := []string{"\x00", string([]byte{byte(0x80 + r.IntN(0x80))}), "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80", "\xe2\x82"}[r.IntN(6)]
		if name := string(good[:at]) + bad + string(good[at:]); !utf8.ValidString(name) || strings.Contains(name, "\x00") {
			return name
		}
	}
}

// TestSubscribeAndProcessorRefuseBadFilterNames: a topic, or a processor's
// Types or Categories, holding NUL or invalid UTF-8 is refused up front
// with events.ErrInvalidEvent, rather than by every read of a consumer that
// would then stay degraded on PostgreSQL and idle in memory.
func TestSubscribeAndProcessorRefuseBadFilterNames(t *testing.T) {
	t.Parallel()
	src, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = src.Close() })
	sub, err := feed.NewSubscriber(src, &feed.SubscriberConfig{ConsumerName: "c"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	noop := func(context.Context, events.Envelope) error { return nil }
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	for range 200 {
		bad := randomBadName(r)
		_, err := sub.Subscribe(t.Context(), bad)
		require.ErrorIs(t, err, events.ErrInvalidEvent, "seed %d: topic %q", seed, bad)
		require.ErrorContains(t, err, fmt.Sprintf("%q", bad), "seed %d: the error names the topic", seed)

		cfg := feed.ProcessorConfig{Name: "p", Types: []string{"t"}, Categories: []string{"order"}}
		if r.IntN(2) == 0 {
			cfg.Types = append(cfg.Types, bad)
		} else {
			cfg.Categories = append(cfg.Categories, bad)
		}
		p, err := feed.NewProcessor(src, &cfg, noop)
		if p != nil {
			require.NoError(t, p.Close())
		}
		require.ErrorIs(t, err, events.ErrInvalidEvent, "seed %d: types %q, categories %q", seed, cfg.Types, cfg.Categories)
	}
	// Topics no stream's category can be: C1 controls, line and paragraph
	// separators, longer than a stream id may be.
	for range 50 {
		seps := []string{"\u0085", "\u009f", "\u2028", "\u2029"}
		bad := "order" + seps[r.IntN(len(seps))] + fmt.Sprint(r.IntN(10))
		if r.IntN(4) == 0 {
			bad = strings.Repeat("o", events.MaxStreamIDLength+1+r.IntN(100))
		}
		_, err := sub.Subscribe(t.Context(), bad)
		require.ErrorIs(t, err, events.ErrInvalidEvent, "seed %d: topic %q", seed, bad)
	}
	for _, cfg := range []feed.ProcessorConfig{{Name: "p", Types: []string{""}}, {Name: "p", Categories: []string{""}}} {
		_, err := feed.NewProcessor(src, &cfg, noop)
		require.ErrorIs(t, err, events.ErrInvalidEvent, "an empty name, types %q, categories %q", cfg.Types, cfg.Categories)
	}
	require.Empty(t, sub.Status(), "no consumer was started")
}

// TestNewProcessorRefusesANameRowKeysRefuse: a processor's records,
// halts and dead letters are row keys made of its name, so a name holding
// a control character of any kind (C0, C1, U+2028, U+2029) or invalid
// UTF-8 is refused when the processor is made, not at its first write.
// Names and positions are random; a printable name beside each is taken.
func TestNewProcessorRefusesANameRowKeysRefuse(t *testing.T) {
	t.Parallel()
	src, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = src.Close() })
	noop := func(context.Context, events.Envelope) error { return nil }
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	bad := []string{"\x01", "\x1f", "\x7f", "\u0080", "\u0085", "\u009b", "\u009f", "\u2028", "\u2029", "\xff", "\xc3"}
	for range 100 {
		base := fmt.Sprintf("proc-%d-é", rng.IntN(1000))
		_, err := feed.NewProcessor(src, &feed.ProcessorConfig{Name: base}, noop)
		require.NoError(t, err, "%q is printable", base)
		at := rng.IntN(len(base) + 1)
		for !utf8.ValidString(base[:at]) {
			at--
		}
		name := base[:at] + bad[rng.IntN(len(bad))] + base[at:]
		_, err = feed.NewProcessor(src, &feed.ProcessorConfig{Name: name}, noop)
		require.ErrorContains(t, err, "control character", "%q", name)
	}
}

package projections_test

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/projections"
)

// TestValidateNameFollowsItsRule checks ValidateName against the rule its
// doc states (1 to MaxNameLength bytes of lower-case letters, digits, '_',
// '.' and '-', starting with a letter or digit) over random names drawn
// mostly from that alphabet, so both answers come up often.
func TestValidateNameFollowsItsRule(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	const allowed = "abcdefghijklmnopqrstuvwxyz0123456789_.-"
	others := []rune{'A', 'Z', ' ', '/', '@', '#', '*', '%', '\'', '"', '\x00', '\n', 'é', 'ß', '流', '\u2028', 0x10ffff}
	rule := func(name string) bool {
		if name == "" || len(name) > projections.MaxNameLength || strings.ContainsRune("_.-", rune(name[0])) {
			return false
		}
		for i := range len(name) {
			if !strings.ContainsRune(allowed, rune(name[i])) {
				return false
			}
		}
		return true
	}
	valid := 0
	for range 20000 {
		n := rng.IntN(projections.MaxNameLength + 10)
		var b strings.Builder
		for range n {
			if rng.IntN(40) == 0 {
				b.WriteRune(others[rng.IntN(len(others))])
			} else {
				b.WriteByte(allowed[rng.IntN(len(allowed))])
			}
		}
		name := b.String()
		err := projections.ValidateName(name)
		require.Equal(t, rule(name), err == nil, "%q: %v", name, err)
		_, nerr := projections.NewSafely(name, nil)
		require.Equal(t, err == nil, nerr == nil, "NewSafely applies ValidateName to %q", name)
		if err == nil {
			valid++
		}
	}
	require.Positive(t, valid, "the generator must produce valid names too")
}

// TestConfigRefusals checks the refusals Config and RunnerConfig document:
// a negative value is an error naming its field, never a silent default.
func TestConfigRefusals(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	negDur := func() time.Duration { return -time.Duration(1 + rng.Int64N(int64(time.Hour))) }
	negInt := func() int { return -1 - rng.IntN(1<<20) }

	store, err := memstore.New(&memstore.Config{Registry: newRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	ok := balances("ok", nil)

	for range 20 {
		for _, tc := range []struct {
			name string
			cfg  *projections.Config
			want string
		}{
			{"negative SLA", &projections.Config{SLA: negDur()}, "Config.SLA"},
			{"negative partitions", &projections.Config{Partitions: negInt()}, "Config.Partitions"},
			{"too many partitions", &projections.Config{Partitions: feed.MaxPartitions + 1 + rng.IntN(1000)}, "Config.Partitions"},
			{"bad partition key", &projections.Config{PartitionKey: "tenant"}, "Config.PartitionKey"},
		} {
			_, err := projections.NewSafely("p", tc.cfg)
			require.ErrorContains(t, err, tc.want, tc.name)
		}

		for _, tc := range []struct {
			name string
			cfg  projections.RunnerConfig
			want string
		}{
			{"negative attempts", projections.RunnerConfig{MaxAttempts: negInt()}, "RunnerConfig.MaxAttempts"},
			{"negative backoff", projections.RunnerConfig{BackoffMin: negDur()}, "RunnerConfig.BackoffMin"},
			{"negative status poll", projections.RunnerConfig{StatusPollInterval: negDur()}, "RunnerConfig.StatusPollInterval"},
			{"negative commit batch", projections.RunnerConfig{CommitBatch: negInt()}, "RunnerConfig.CommitBatch"},
			{"negative rebuild batch", projections.RunnerConfig{RebuildCommitBatch: negInt()}, "RunnerConfig.RebuildCommitBatch"},
			{"negative close timeout", projections.RunnerConfig{CloseTimeout: negDur()}, "RunnerConfig.CloseTimeout"},
			{"negative drop batch", projections.RunnerConfig{DropBatch: negInt()}, "RunnerConfig.DropBatch"},
			{"subscriber name", projections.RunnerConfig{Subscriber: &feed.SubscriberConfig{ConsumerName: "x"}}, "Subscriber.ConsumerName is set"},
			{"subscriber commit batch", projections.RunnerConfig{Subscriber: &feed.SubscriberConfig{CommitBatch: 1 + rng.IntN(10)}}, "Subscriber.CommitBatch is set"},
			{"subscriber on committed", projections.RunnerConfig{Subscriber: &feed.SubscriberConfig{OnCommitted: func(string, events.Token) {}}}, "Subscriber.OnCommitted is set"},
			{"both backoffs", projections.RunnerConfig{BackoffMax: time.Second, Subscriber: &feed.SubscriberConfig{NackBackoffMin: time.Millisecond}}, "set one of them"},
			{"nil projection", projections.RunnerConfig{Projections: []*projections.Projection{ok, nil}}, "RunnerConfig.Projections[1] is nil"},
		} {
			cfg := tc.cfg
			cfg.Source = store
			if cfg.Projections == nil {
				cfg.Projections = []*projections.Projection{ok}
			}
			_, err := projections.NewRunner(&cfg)
			require.ErrorContains(t, err, tc.want, tc.name)
		}
	}

	p, err := projections.NewSafely("p", &projections.Config{Class: consistency.Strong})
	require.NoError(t, err)
	require.Equal(t, consistency.ReadModel{Name: "p", Class: consistency.Strong}, p.ReadModel(), "a strong projection has no SLA")
	p, err = projections.NewSafely("p", &projections.Config{Partitions: feed.MaxPartitions, PartitionKey: feed.ByCorrelation})
	require.NoError(t, err, "the bounds are valid")
	require.Equal(t, projections.DefaultSLA, p.ReadModel().SLA)
}

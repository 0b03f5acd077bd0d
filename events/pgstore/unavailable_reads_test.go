package pgstore_test

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/faultproxy"
)

// TestEveryReadAndCheckpointCallOfAGoneServerIsUnavailable: errors caused
// by the database being unreachable wrap events.ErrUnavailable (the
// promise of events.ErrUnavailable), on every read, Inspector and
// checkpoint call, whether the connection breaks in the middle of an
// answer or no new one can be made: callers that retry on it (lag
// passes, consumers, leases) would otherwise take the outage for an
// answer. The calls run in random order.
func TestEveryReadAndCheckpointCallOfAGoneServerIsUnavailable(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 19))
	b := setupFaults(t, noRetry, func(c *pgxpool.Config) { c.ConnConfig.ConnectTimeout = 2 * time.Second })
	ctx := t.Context()
	st := b.store
	_, err := st.Append(ctx, "gone-1", events.AnyVersion, rawEvent(1))
	require.NoError(t, err)
	lease, err := st.Checkpoints().Acquire(ctx, "gone", "the-test", time.Minute)
	require.NoError(t, err)
	// Warm the statements on a connection, so that a connection cut in the
	// middle of an answer is what the first read meets.
	_, err = st.ReadFeed(ctx, events.Token{}, feed.Filter{Types: []string{"test.fault"}}, 10)
	require.NoError(t, err)
	fired := b.proxy.Inject(faultproxy.Fault{Match: faultproxy.Contains("test.fault")})
	_, err = st.ReadFeed(ctx, events.Token{}, feed.Filter{Types: []string{"test.fault"}}, 10)
	requireFired(t, fired)
	require.ErrorIs(t, err, events.ErrUnavailable, "a feed read cut in the middle of its answer")

	b.proxy.Close() // the server is gone: connections cut, new ones refused
	calls := map[string]func() error{
		"ReadFeed":      func() error { _, err := st.ReadFeed(ctx, events.Token{}, feed.Filter{}, 10); return err },
		"ReadAll":       func() error { _, err := st.ReadAll(ctx, events.Token{}, 10); return err },
		"ReadStream":    func() error { _, err := st.ReadStream(ctx, "gone-1", 0, 10); return err },
		"StreamVersion": func() error { _, err := st.StreamVersion(ctx, "gone-1"); return err },
		"Head":          func() error { _, err := st.Head(ctx); return err },
		"OldestAfter":   func() error { _, _, err := st.OldestAfter(ctx, events.Token{}); return err },
		"Consumers":     func() error { _, err := st.Consumers(ctx); return err },
		"Position":      func() error { _, err := st.Checkpoints().Position(ctx, "gone"); return err },
		"Acquire": func() error {
			_, err := st.Checkpoints().Acquire(ctx, "gone-too", "the-test", time.Minute)
			return err
		},
		"Renew":   func() error { return st.Checkpoints().Renew(ctx, lease, time.Minute) },
		"Advance": func() error { return st.Checkpoints().Advance(ctx, lease, events.MakeToken(1, 1)) },
		"Release": func() error { return st.Checkpoints().Release(ctx, lease) },
	}
	names := make([]string, 0, len(calls))
	for n := range calls {
		names = append(names, n)
	}
	rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	for _, n := range names {
		err := calls[n]()
		require.Error(t, err, n)
		require.True(t, errors.Is(err, events.ErrUnavailable), "%s: %v", n, err)
	}
}

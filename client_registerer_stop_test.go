package converge_test

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events/memstore"
)

// TestStoppedClientLeavesTheRegistererToTheNextOne: ErrStopped says to
// make a new client, and a process that does so (a restart in place, a
// test) usually hands it the same Registerer. Stop takes the stopped
// client's saga and lag metrics off it, whether the client ran or not, so
// the next one registers there; and the registry exports the new client's
// metrics only. Whether each client starts, and how many follow one
// another, is random.
func TestStoppedClientLeavesTheRegistererToTheNextOne(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 41))
	st, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	reg := prometheus.NewRegistry()
	converged := func() []string { return convergeMetrics(t, reg) }
	for i := range 2 + rng.IntN(3) {
		cfg := shop(st, nil)
		cfg.Registerer = reg
		cfg.Logger = slog.New(slog.DiscardHandler)
		cl, err := converge.NewClient(st, cfg)
		require.NoError(t, err, "client %d on the Registerer its predecessor used", i)
		require.NotEmpty(t, converged(), "client %d registered its metrics", i)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if rng.IntN(2) == 0 {
			require.NoError(t, cl.Start(ctx))
		}
		require.NoError(t, cl.Stop(ctx))
		cancel()
		require.Empty(t, converged(), "client %d stopped: its metrics are off the Registerer", i)
	}
}

// TestAStoppedClientLeavesANewerClientsMetricsAlone: Stop may be called
// more than once, and a registry matches collectors by their names, so a
// second Stop of an old client must not take off the metrics a newer
// client registered there since; and a client whose Start failed is
// stopped for good, so the new client ErrStopped asks for registers on
// the same Registerer.
func TestAStoppedClientLeavesANewerClientsMetricsAlone(t *testing.T) {
	t.Parallel()
	st, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	reg := prometheus.NewRegistry()
	build := func() *converge.Client {
		t.Helper()
		cfg := shop(st, nil)
		cfg.Registerer = reg
		cfg.Logger = slog.New(slog.DiscardHandler)
		cl, err := converge.NewClient(st, cfg)
		require.NoError(t, err)
		return cl
	}
	families := func() int {
		t.Helper()
		mfs, err := reg.Gather()
		require.NoError(t, err)
		return len(mfs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A Start that fails stops the client for good, metrics included.
	failed := build()
	cancelled, stop := context.WithCancel(ctx)
	stop()
	require.Error(t, failed.Start(cancelled))
	require.ErrorIs(t, failed.Start(ctx), converge.ErrStopped)

	old := build()
	require.NoError(t, old.Stop(ctx))
	newer := build()
	registered := families()
	require.NotZero(t, registered)
	require.NoError(t, old.Stop(ctx), "Stop again")
	require.NoError(t, failed.Stop(ctx), "Stop of the client whose Start failed")
	require.Equal(t, registered, families(), "the newer client's metrics stay registered")
	require.NoError(t, newer.Stop(ctx))
	require.Zero(t, families())
}

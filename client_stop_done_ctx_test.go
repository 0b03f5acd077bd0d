package converge_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events/memstore"
)

// TestStopWithADoneContextStillStops: a Stop whose ctx is already done (a
// deferred Stop with the signal context that ended the program) on a
// running client, with no Start or other Stop under way, still stops it:
// the router ends and the client's metrics leave Config.Registerer, so
// the next client can register there. Stop's turn is free then; it used
// to pick at random between taking it and the done ctx, and half the
// time reported "still starting or stopping" having stopped nothing.
func TestStopWithADoneContextStillStops(t *testing.T) {
	t.Parallel()
	st, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	reg := prometheus.NewRegistry()
	registered := func() []string { return convergeMetrics(t, reg) }
	done, cancel := context.WithCancel(context.Background())
	cancel()
	// Each round would pass by luck with probability 1/2.
	for i := range 20 {
		cfg := shop(st, nil)
		cfg.Registerer = reg
		cfg.Logger = slog.New(slog.DiscardHandler)
		cl, err := converge.NewClient(st, cfg)
		require.NoError(t, err, "client %d on the Registerer its stopped predecessor used", i)
		require.NoError(t, cl.Start(context.Background()))
		stopErr := cl.Stop(done)
		if stopErr != nil {
			require.NotContains(t, stopErr.Error(), "still starting or stopping", "client %d: nothing else was starting or stopping it", i)
		}
		require.Empty(t, registered(), "client %d: Stop(done ctx) returned %v and left its metrics on the Registerer", i, stopErr)
		require.Eventually(t, cl.Router().IsClosed, 10*time.Second, 5*time.Millisecond,
			"client %d: Stop(done ctx) returned %v and its router still runs", i, stopErr)
		stopQuietly(cl)
	}
}

package converge_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events/memstore"
)

// TestRegistererReceivesSagaAndLagMetrics: Config.Registerer receives the
// saga engine's and the lag monitor's metrics once the client runs.
func TestRegistererReceivesSagaAndLagMetrics(t *testing.T) {
	t.Parallel()
	st, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	reg := prometheus.NewRegistry()
	cfg := shop(st, nil)
	cfg.Registerer = reg
	cfg.Logger = slog.New(slog.DiscardHandler)
	c, err := converge.NewClient(st, cfg)
	require.NoError(t, err)
	require.NoError(t, c.Start(context.Background()))
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	require.Eventually(t, func() bool {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		var saga, lag bool
		for _, mf := range mfs {
			saga = saga || strings.HasPrefix(mf.GetName(), "converge_saga_")
			lag = lag || strings.HasPrefix(mf.GetName(), "converge_projection_")
		}
		return saga && lag
	}, 10*time.Second, 50*time.Millisecond)
}

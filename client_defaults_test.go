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
	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/projections"
	"github.com/converge-es/converge/saga"
)

// TestLagSLADefault: with Config.LagSLA left zero, the lag monitor holds
// a read model that declares no SLA (a strong one) to lag.DefaultSLA.
func TestLagSLADefault(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	store, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	strong := projections.New("strong_status", &projections.Config{Class: consistency.Strong})
	projections.On(strong, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderPlaced) error {
		return tx.Table("orders").Put(ctx, e.OrderID, "placed")
	})
	client, err := converge.NewClient(store, &converge.Config{
		Projections: []*projections.Projection{strong},
		Subscriber:  feed.SubscriberConfig{LeaseTTL: time.Minute},
		Logger:      slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	run(t, client)
	reports, err := client.Lag().Check(ctx)
	require.NoError(t, err)
	require.Len(t, reports, 1)
	require.Equal(t, "strong_status", reports[0].Name)
	require.Equal(t, lag.DefaultSLA, reports[0].SLA)
}

// TestRegistererNilKeepsMetricsUnregistered: with Config.Registerer left
// nil, the saga engine's metrics count (Client.Sagas().Metrics()), but
// neither they nor the lag monitor's are registered on the default
// registry.
func TestRegistererNilKeepsMetricsUnregistered(t *testing.T) {
	t.Parallel()
	store, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	var client *converge.Client
	cfg := shop(store, func(name string) *projections.View { return client.Projections().View(name) })
	cfg.Subscriber = feed.SubscriberConfig{LeaseTTL: time.Minute}
	cfg.LagInterval = 10 * time.Millisecond
	require.Nil(t, cfg.Registerer)
	client, err = converge.NewClient(store, cfg)
	require.NoError(t, err)
	run(t, client)
	placeAndAwait(t, client, 0, 2)
	// The monitor has sampled since, with metrics to update.
	select {
	case <-client.Lag().Passed():
	case <-time.After(30 * time.Second):
		t.Fatal("the lag monitor never sampled")
	}

	require.Positive(t, counterSum(client.Sagas().Metrics().Steps), "the engine's metrics count")
	mfs, err := prometheus.DefaultGatherer.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		require.False(t, strings.HasPrefix(mf.GetName(), "converge_"), "%s is registered on the default registry", mf.GetName())
	}
}

// TestSagasAloneHaveACommandProcessor: a client with sagas and no command
// handlers still has a command processor, with no consumers:
// Client.Commands is nil only when there are neither.
func TestSagasAloneHaveACommandProcessor(t *testing.T) {
	t.Parallel()
	store, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	client, err := converge.NewClient(store, &converge.Config{
		Sagas:  []saga.Definition{chargeOnly()},
		Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	require.NotNil(t, client.Commands())
	require.Empty(t, client.Commands().Consumers())
	stop(t, client)
}

package saga_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/internal/clocktest"
	"github.com/converge-es/converge/saga"
)

// TestDuplicateWaitsForNoReadModel: a gated step parks, its model catches
// up, the step runs; then the same message is delivered again (a
// duplicate). It counts as a duplicate only: no step, no park, and no
// gate wait (gate_waits_total and gate_wait_seconds are waits for read
// models before a step). It used to wait a whole GateTimeout for the
// instance's token, which its own commands had raised past the model,
// holding its partition up and counting a model as lagging.
func TestDuplicateWaitsForNoReadModel(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		store := newStore(t, mk)
		clock := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		tracker, err := consistency.NewTracker(&consistency.TrackerConfig{Positions: store.Checkpoints()})
		require.NoError(t, err)
		reg := prometheus.NewRegistry()
		eng, err := saga.NewEngine(&saga.EngineConfig{
			Store: store, Sagas: []saga.Definition{orderSaga(true)}, Tracker: tracker, Clock: clock,
			GateTimeout: 20 * time.Millisecond, Registerer: reg,
		})
		require.NoError(t, err)
		b := bare{store: store, engine: eng}
		m := eng.Metrics()

		b.deliver(t, b.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 30}))
		reserved := b.append(t, "order-1", StockReserved{OrderID: "1"})
		b.deliver(t, reserved)
		require.Equal(t, 1.0, testutil.ToFloat64(m.Parks.WithLabelValues(orders)))
		require.Equal(t, 1.0, testutil.ToFloat64(m.Waits.WithLabelValues("false")))

		// The model catches up (the summary row the handler reads is there).
		other := b.append(t, "other", OrderPlaced{OrderID: "x"})
		require.NoError(t, store.Rows().Put(ctx, "model."+summaryModel, "totals", "1", []byte("30"), other.Token))
		tracker.Advance(summaryModel, other.Token)
		_, err = eng.RunParked(ctx)
		require.NoError(t, err)
		require.Equal(t, 2.0, testutil.ToFloat64(m.Steps.WithLabelValues(orders, "ok")))
		require.Equal(t, 1, histCount(t, reg, "converge_saga_park_seconds"), "one park observed")
		require.Equal(t, 1, histCount(t, reg, "converge_saga_gate_wait_seconds"), "one gate wait observed")

		waitsBefore := testutil.ToFloat64(m.Waits.WithLabelValues("false")) + testutil.ToFloat64(m.Waits.WithLabelValues("true"))
		start := time.Now()
		b.deliver(t, reserved) // a duplicate
		took := time.Since(start)
		require.Equal(t, 1.0, testutil.ToFloat64(m.Duplicates.WithLabelValues(orders)), "counted as a duplicate")
		require.Equal(t, 2.0, testutil.ToFloat64(m.Steps.WithLabelValues(orders, "ok")), "no step")
		require.Equal(t, 1.0, testutil.ToFloat64(m.Parks.WithLabelValues(orders)), "no park")
		waitsAfter := testutil.ToFloat64(m.Waits.WithLabelValues("false")) + testutil.ToFloat64(m.Waits.WithLabelValues("true"))
		require.Equal(t, waitsBefore, waitsAfter, "a duplicate delivery counted a gate wait (reached=false now %v; it took %s)",
			testutil.ToFloat64(m.Waits.WithLabelValues("false")), took)
		require.Equal(t, 1, histCount(t, reg, "converge_saga_gate_wait_seconds"), "a duplicate delivery observed a gate wait")
	})
}

func histCount(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	fams, err := reg.Gather()
	require.NoError(t, err)
	n := 0
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			n += int(m.GetHistogram().GetSampleCount())
		}
	}
	return n
}

// TestIgnoredMessageWaitsForNoReadModel: a gated On message for an id
// with no instance is ignored (no_instance); no step runs, so no gate wait
// is made or counted.
func TestIgnoredMessageWaitsForNoReadModel(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		store := newStore(t, mk)
		tracker, err := consistency.NewTracker(&consistency.TrackerConfig{Positions: store.Checkpoints()})
		require.NoError(t, err)
		reg := prometheus.NewRegistry()
		eng, err := saga.NewEngine(&saga.EngineConfig{
			Store: store, Sagas: []saga.Definition{orderSaga(true)}, Tracker: tracker,
			GateTimeout: 200 * time.Millisecond, Registerer: reg,
		})
		require.NoError(t, err)
		b := bare{store: store, engine: eng}
		m := eng.Metrics()
		start := time.Now()
		b.deliver(t, b.append(t, "order-9", StockReserved{OrderID: "9"}))
		took := time.Since(start)
		require.Equal(t, 1.0, testutil.ToFloat64(m.Ignored.WithLabelValues(orders, "no_instance")))
		require.Zero(t, testutil.ToFloat64(m.Waits.WithLabelValues("false"))+testutil.ToFloat64(m.Waits.WithLabelValues("true")),
			"an ignored message counted a gate wait (delivery took %s)", took)
	})
}

package saga_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestMetrics drives the engine through a park that turns stuck, a
// release, a completion and a timer, and reads every documented metric
// back from the registerer it was given.
func TestMetrics(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		reg := prometheus.NewRegistry()
		fx := newFixture(t, mk, setup{gated: true, config: func(c *sagatest.Config) {
			c.Engine = func(ec *saga.EngineConfig) { ec.Registerer = reg }
		}})
		m := fx.Engine().Metrics()
		fx.HoldModel(summaryModel)
		fx.Given(placed("1", 30), ev("1", StockReserved{OrderID: "1"}), placed("2", 30))
		require.Equal(t, 1.0, testutil.ToFloat64(m.Parks.WithLabelValues(orders)), "one step parked")
		require.Equal(t, 1.0, testutil.ToFloat64(m.Waits.WithLabelValues("false")), "one gate wait gave up")
		fx.Advance(saga.DefaultStuckAfter + time.Second)
		require.Equal(t, 1.0, testutil.ToFloat64(m.Stuck.WithLabelValues(orders)), "the parked step is stuck")
		fx.Clock().Advance(30 * time.Minute)
		n, err := fx.Engine().FireDue(t.Context())
		require.NoError(t, err)
		require.Equal(t, 2, n)
		require.Equal(t, 2.0, testutil.ToFloat64(m.TimersDue), "both payment timers were due at the pass")
		require.Equal(t, 2.0, testutil.ToFloat64(m.TimersFired.WithLabelValues(orders)))
		require.NoError(t, fx.Settle())
		require.Zero(t, testutil.ToFloat64(m.TimersDue), "nothing is due after the next pass")

		fx.ReleaseModel(summaryModel)
		require.Zero(t, testutil.ToFloat64(m.Stuck.WithLabelValues(orders)), "a stuck step that ran is no longer stuck")
		require.Equal(t, 1, testutil.CollectAndCount(m.ParkSeconds), "the park's duration was observed")
		require.Positive(t, testutil.ToFloat64(m.Steps.WithLabelValues(orders, "ok")))
		require.Positive(t, testutil.ToFloat64(m.Steps.WithLabelValues(orders, "failed")), "instance 2's timeout failed it")

		names := map[string]bool{}
		families, err := reg.Gather()
		require.NoError(t, err)
		for _, f := range families {
			names[f.GetName()] = true
		}
		for _, n := range []string{
			"converge_saga_steps_total", "converge_saga_parks_total", "converge_saga_gate_waits_total",
			"converge_saga_gate_wait_seconds", "converge_saga_park_seconds", "converge_saga_stuck_instances",
			"converge_saga_timers_fired_total", "converge_saga_timers_due",
		} {
			require.True(t, names[n], "metric %s is registered and has a sample", n)
		}
		_, err = saga.NewEngine(&saga.EngineConfig{Store: fx.Store(), Sagas: []saga.Definition{orderSaga(false, nil)}, Registerer: reg})
		require.ErrorContains(t, err, "already registered", "a second engine on one registerer is refused")
	})
}

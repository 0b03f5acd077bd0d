package saga_test

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
	"github.com/converge-es/converge/saga/sagatest"
)

// metricName finds a metric and the label names in its braces in prose.
var metricName = regexp.MustCompile(`(converge_saga_[a-z_]+)(?:\{([a-z_,]*)\})?`)

// documentedMetrics returns the metrics the package doc lists under
// "Metrics (Engine.Metrics; ...)", each with its label names, sorted.
func documentedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	src, err := os.ReadFile("doc.go")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(src), "// Metrics (Engine.Metrics")
	require.True(t, ok, "the package doc has a metrics section")
	section, _, ok = strings.Cut(section, "\n//\n// #")
	require.True(t, ok, "the metrics section ends at the next heading")
	out := map[string][]string{}
	for _, m := range metricName.FindAllStringSubmatch(section, -1) {
		labels := []string{}
		if m[2] != "" {
			labels = strings.Split(m[2], ",")
		}
		slices.Sort(labels)
		if prev, dup := out[m[1]]; dup {
			require.Equal(t, prev, labels, "%s is listed twice with different labels", m[1])
		}
		out[m[1]] = labels
	}
	require.NotEmpty(t, out)
	return out
}

// descFields reads a collector description's name and variable labels.
var descFields = regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)

// TestMetricsDocMatchesTheCollectors compares the metric list of the
// package doc with the collectors an engine registers, names and label
// names, so neither can change without the other.
func TestMetricsDocMatchesTheCollectors(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	b := newBare(t, nil)
	eng, err := saga.NewEngine(&saga.EngineConfig{Store: b.store, Sagas: []saga.Definition{orderSaga(false)}, Registerer: reg})
	require.NoError(t, err)
	got := map[string][]string{}
	ch := make(chan *prometheus.Desc, 100)
	for _, c := range eng.Metrics().Collectors() {
		c.Describe(ch)
	}
	close(ch)
	for d := range ch {
		m := descFields.FindStringSubmatch(d.String())
		require.NotNil(t, m, "cannot read the description %s", d)
		labels := []string{}
		if m[2] != "" {
			labels = strings.Split(m[2], ",")
		}
		slices.Sort(labels)
		got[m[1]] = labels
	}
	require.Equal(t, documentedMetrics(t), got, "the package doc's metrics (left) against the engine's collectors (right)")
	for _, c := range eng.Metrics().Collectors() {
		var are prometheus.AlreadyRegisteredError
		require.ErrorAs(t, reg.Register(c), &are, "every collector is registered on EngineConfig.Registerer")
	}
}

// versioned is a saga whose state is stored at schema version v: an
// engine running version 1 meets the state version 2 stored.
func versioned(v int) *saga.Saga[orderState] {
	s := saga.New[orderState]("versioned", &saga.Config[orderState]{StateVersion: v})
	saga.StartOn(s, byOrder[PaymentDeclined], func(st *saga.Step[orderState], e PaymentDeclined) error {
		st.State().OrderID = e.OrderID
		return nil
	})
	return s
}

// TestMetrics drives the engine through a park that turns stuck, a
// release, timers (fired, due, stale), ignored messages (no instance, an
// ended one), a duplicate delivery, bad input of every kind, a state newer
// than the build and a retention purge, then reads every metric the
// package doc lists back from the registerer it was given, with the
// documented label names, and finds no metric the doc does not list.
func TestMetrics(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		reg := prometheus.NewRegistry()
		handlers := catalog{"stock.reserve": true, "payment.charge": true, "order.ship": true, "stock.release": true, "customer.notify": true}
		fx := newFixture(t, mk, setup{gated: true, config: func(c *sagatest.Config) {
			c.Sagas = append(c.Sagas, versioned(1))
			c.Commands = handlers
			c.Engine = func(ec *saga.EngineConfig) { ec.Registerer, ec.Retention = reg, saga.MinRetention }
		}})
		m := fx.Engine().Metrics()
		fx.HoldModel(summaryModel)
		fx.Given(placed("1", 30), ev("1", StockReserved{OrderID: "1"}), placed("2", 30))
		require.Equal(t, 1.0, testutil.ToFloat64(m.Parks.WithLabelValues(orders)), "one step parked")
		require.Equal(t, 1.0, testutil.ToFloat64(m.Waits.WithLabelValues("false")), "one gate wait gave up")
		fx.Advance(saga.DefaultStuckAfter + time.Second)
		require.Equal(t, 1.0, testutil.ToFloat64(m.Stuck.WithLabelValues(orders)), "the parked step is stuck")
		fx.Clock().Advance(30 * time.Minute)
		n, err := fx.Engine().FireDue(ctx)
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

		// Messages ignored: for no instance, and for an ended one.
		fx.When(ev("9", PaymentCharged{OrderID: "9"}))
		complete(fx, "3")
		fx.When(ev("3", Ping{OrderID: "3", N: 1}))
		require.Equal(t, 1.0, testutil.ToFloat64(m.Ignored.WithLabelValues(orders, "no_instance")))
		require.Equal(t, 1.0, testutil.ToFloat64(m.Ignored.WithLabelValues(orders, "ended")))
		// A timer that fires before its reschedule is taken is stale.
		fx.Given(placed("4", 30))
		fx.Append(ev("4", Ping{OrderID: "4", N: -1}))
		fx.Clock().Advance(31 * time.Minute)
		_, err = fx.Engine().FireDue(ctx)
		require.NoError(t, err)
		fx.When()
		require.Equal(t, 1.0, testutil.ToFloat64(m.TimersStale.WithLabelValues(orders)))
		// A duplicate delivery.
		envs, err := fx.Store().ReadStream(ctx, "order-4", 1, 1)
		require.NoError(t, err)
		require.NoError(t, drive.Unit(ctx, fx.Store(), 0, func(ctx context.Context) error { return fx.Engine().Handle(ctx, envs[0]) }))
		require.Equal(t, 1.0, testutil.ToFloat64(m.Duplicates.WithLabelValues(orders)))
		// Bad input of each kind.
		require.ErrorIs(t, fx.TryWhen(sagatest.Event{Stream: "order-none", Data: StockReserved{}}), saga.ErrCorrelation)
		require.ErrorIs(t, fx.TryWhen(sagatest.Event{Stream: "order-x", Data: events.Raw{Type: "stock.reserved", Payload: json.RawMessage(`{"order_id":5}`)}}), events.ErrDecode)
		delete(handlers, "payment.charge")
		fx.When(placed("5", 30), ev("5", StockReserved{OrderID: "5"}))
		handlers["payment.charge"] = true
		for _, kind := range []string{"correlation", "decode", "no_command_handler"} {
			require.Equal(t, 1.0, testutil.ToFloat64(m.BadInput.WithLabelValues(kind)), "bad input of kind %s", kind)
		}
		// State stored by a newer build.
		newer, err := saga.NewEngine(&saga.EngineConfig{Store: fx.Store(), Sagas: []saga.Definition{versioned(2)}, Clock: fx.Clock()})
		require.NoError(t, err)
		res := fx.Append(ev("v", PaymentDeclined{OrderID: "v"}))
		envs, err = fx.Store().ReadStream(ctx, "order-v", res.LastVersion, 1)
		require.NoError(t, err)
		require.NoError(t, drive.Unit(ctx, fx.Store(), 0, func(ctx context.Context) error { return newer.Handle(ctx, envs[0]) }))
		fx.When(ev("v", PaymentDeclined{OrderID: "v"}))
		require.Equal(t, 1.0, testutil.ToFloat64(m.NewerState.WithLabelValues("versioned")))
		// A retention purge of ended instances and of ignored messages.
		fx.Clock().Advance(saga.MinRetention + time.Second)
		_, err = fx.Engine().PurgeEnded(ctx)
		require.NoError(t, err)
		require.Positive(t, testutil.ToFloat64(m.Purged.WithLabelValues(orders, "instance")))
		require.Positive(t, testutil.ToFloat64(m.Purged.WithLabelValues(orders, "ignored")))

		documented := documentedMetrics(t)
		families, err := reg.Gather()
		require.NoError(t, err)
		seen := map[string]bool{}
		for _, f := range families {
			labels, ok := documented[f.GetName()]
			require.True(t, ok, "metric %s is not in the package doc", f.GetName())
			seen[f.GetName()] = true
			for _, s := range f.GetMetric() {
				got := []string{}
				for _, l := range s.GetLabel() {
					got = append(got, l.GetName())
				}
				slices.Sort(got)
				require.Equal(t, labels, got, "labels of %s", f.GetName())
			}
		}
		for name := range documented {
			require.True(t, seen[name], "documented metric %s has a sample", name)
		}
		_, err = saga.NewEngine(&saga.EngineConfig{Store: fx.Store(), Sagas: []saga.Definition{orderSaga(false)}, Registerer: reg})
		require.ErrorContains(t, err, "already registered", "a second engine on one registerer is refused")
	})
}

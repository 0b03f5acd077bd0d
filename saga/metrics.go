package saga

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are an engine's Prometheus collectors. Each engine has its own,
// registered on EngineConfig.Registerer when one is given, so tests that
// build many engines never register twice.
type Metrics struct {
	steps       *prometheus.CounterVec
	parks       *prometheus.CounterVec
	waits       *prometheus.CounterVec
	waitSeconds *prometheus.HistogramVec
	parkSeconds *prometheus.HistogramVec
	stuck       *prometheus.GaugeVec
	ignored     *prometheus.CounterVec
	duplicates  *prometheus.CounterVec
	badInput    *prometheus.CounterVec
	timersFired *prometheus.CounterVec
	timersStale *prometheus.CounterVec
	timersDue   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "converge_saga_steps_total", Help: "Saga steps run, by saga and outcome (ok, completed, failed, retry).",
		}, []string{"saga", "outcome"}),
		parks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "converge_saga_parks_total", Help: "Steps parked because their read models had not reached the causal token.",
		}, []string{"saga"}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "converge_saga_gate_waits_total", Help: "Waits for read models before a step, by whether they caught up in time.",
		}, []string{"reached"}),
		waitSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "converge_saga_gate_wait_seconds", Help: "How long steps waited for their read models before running or parking.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"saga"}),
		parkSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "converge_saga_park_seconds", Help: "How long parked steps waited before they ran.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}, []string{"saga"}),
		stuck: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "converge_saga_stuck_instances", Help: "Instances whose parked step has waited longer than the saga's StuckAfter.",
		}, []string{"saga"}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "converge_saga_ignored_total", Help: "Messages ignored: for no instance (no_instance) or an ended one (ended).",
		}, []string{"saga", "reason"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "converge_saga_duplicates_total", Help: "Deliveries of a message an instance had already taken (no-ops).",
		}, []string{"saga"}),
		badInput: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "converge_saga_bad_input_total", Help: "Messages the engine could not route or run: decode, correlation, no_command_handler.",
		}, []string{"kind"}),
		timersFired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "converge_saga_timers_fired_total", Help: "Timers fired (timer-fired events appended).",
		}, []string{"saga"}),
		timersStale: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "converge_saga_timers_stale_total", Help: "Fired timers ignored because they were cancelled or rescheduled first.",
		}, []string{"saga"}),
		timersDue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "converge_saga_timers_due", Help: "Timers due and not yet fired at the timer loop's last pass.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.steps, m.parks, m.waits, m.waitSeconds, m.parkSeconds, m.stuck,
		m.ignored, m.duplicates, m.badInput, m.timersFired, m.timersStale, m.timersDue} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("saga: the engine's metrics are already registered on EngineConfig.Registerer (give each engine its own registerer, or leave it nil)")
			}
			return nil, err
		}
	}
	return m, nil
}

// Collectors returns the collectors, to register them elsewhere.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.steps, m.parks, m.waits, m.waitSeconds, m.parkSeconds, m.stuck,
		m.ignored, m.duplicates, m.badInput, m.timersFired, m.timersStale, m.timersDue}
}

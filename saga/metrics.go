package saga

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/converge-es/converge/events"
)

// Metrics are an engine's Prometheus collectors. Each engine has its own,
// registered on EngineConfig.Registerer when one is given, so tests that
// build many engines never register twice. NewEngine registers every
// collector or, when it fails, none.
type Metrics struct {
	// Steps counts steps by saga and outcome (ok, completed, failed, retry).
	Steps *prometheus.CounterVec
	// Parks counts steps parked for read models, by saga.
	Parks *prometheus.CounterVec
	// Waits counts gate waits by whether the models caught up in time.
	Waits *prometheus.CounterVec
	// WaitSeconds and ParkSeconds observe gate waits and park durations.
	WaitSeconds *prometheus.HistogramVec
	ParkSeconds *prometheus.HistogramVec
	// Stuck is the number of instances whose parked step has waited past
	// Config.StuckAfter, by saga, as the last parked-step pass found them
	// in the store (every SweepInterval, and at each RunParked). Every
	// engine running a saga reports the same count, but one standing by
	// (EngineConfig.Assigned) reports 0, as it makes no pass: aggregate it
	// across processes with max, not sum.
	Stuck *prometheus.GaugeVec
	// Ignored counts messages ignored, by saga and reason (no_instance, ended).
	Ignored *prometheus.CounterVec
	// Duplicates counts deliveries that were no-ops, by saga.
	Duplicates *prometheus.CounterVec
	// BadInput counts messages that could not be routed or run, by kind.
	BadInput *prometheus.CounterVec
	// TimersFired and TimersStale count timers fired and fired timers
	// ignored as cancelled or rescheduled, by saga.
	TimersFired *prometheus.CounterVec
	TimersStale *prometheus.CounterVec
	// TimersDue is the number of timers the timer loop found due at its
	// last pass (it fires them in that pass): a value that stays high
	// means timers come due faster than they fire, or firing fails.
	TimersDue prometheus.Gauge
	// Purged counts what retention deleted (EngineConfig.Retention), by
	// saga and kind: instance (an ended instance whose per-message rows
	// were deleted; its tombstone stays) or ignored (the record of a
	// message ignored for an id with no instance).
	Purged *prometheus.CounterVec
	// NewerState counts steps handed back, by saga, because the instance's
	// state was stored at a newer schema version than this build's (a
	// rolling deploy not finished, or a rollback): the steps wait for a
	// newer build. It should stop rising once every process runs it.
	NewerState *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Steps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "converge_saga_steps_total", Help: "Saga steps run, by saga and outcome (ok, completed, failed, retry).",
		}, []string{"saga", "outcome"}),
		Parks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "converge_saga_parks_total", Help: "Steps parked because their read models had not reached the causal token.",
		}, []string{"saga"}),
		Waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "converge_saga_gate_waits_total", Help: "Waits for read models before a step, by whether they caught up in time.",
		}, []string{"reached"}),
		WaitSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "converge_saga_gate_wait_seconds", Help: "How long steps waited for their read models before running or parking.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"saga"}),
		ParkSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "converge_saga_park_seconds", Help: "How long parked steps waited before they ran.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}, []string{"saga"}),
		Stuck: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "converge_saga_stuck_instances", Help: "Instances whose parked step has waited longer than the saga's StuckAfter.",
		}, []string{"saga"}),
		Ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "converge_saga_ignored_total", Help: "Messages ignored: for no instance (no_instance) or an ended one (ended).",
		}, []string{"saga", "reason"}),
		Duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "converge_saga_duplicates_total", Help: "Deliveries of a message an instance had already taken (no-ops).",
		}, []string{"saga"}),
		BadInput: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "converge_saga_bad_input_total", Help: "Messages the engine could not route or run: decode, correlation, no_command_handler, timer_event_refused (a timer-fired event the store refused, run from the instance's rows instead).",
		}, []string{"kind"}),
		TimersFired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "converge_saga_timers_fired_total", Help: "Timers fired (timer-fired events appended).",
		}, []string{"saga"}),
		TimersStale: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "converge_saga_timers_stale_total", Help: "Fired timers ignored because they were cancelled or rescheduled first.",
		}, []string{"saga"}),
		TimersDue: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "converge_saga_timers_due", Help: "Timers found due at the timer loop's last pass (fired in that pass unless firing failed).",
		}),
		Purged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "converge_saga_purged_total",
			Help: "Retention purges, by kind: instance (an ended instance's history and dedupe records; a tombstone stays) or ignored (a message ignored for an id with no instance).",
		}, []string{"saga", "kind"}),
		NewerState: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "converge_saga_newer_state_total",
			Help: "Steps handed back to wait for a newer build: the instance's state was stored at a newer schema version than this build knows (deploy the newer build everywhere).",
		}, []string{"saga"}),
	}
	if reg == nil {
		return m, nil
	}
	// Every collector or none: a refused engine leaves nothing behind on
	// reg, so an engine built again on it (with a fixed configuration)
	// registers them.
	done := make([]prometheus.Collector, 0, len(m.Collectors()))
	for _, c := range m.Collectors() {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("saga: the engine's metrics are already registered on EngineConfig.Registerer (give each engine its own registerer, or leave it nil)")
			}
			return nil, err
		}
		done = append(done, c)
	}
	return m, nil
}

// onCommit runs fn, a metric update, once the unit ctx carries commits,
// so a unit that rolls back (and may run again) counts nothing. Without a
// unit it runs fn at once.
func onCommit(ctx context.Context, fn func()) {
	if u, ok := events.UnitFromContext(ctx); ok {
		u.AfterCommit(fn)
		return
	}
	fn()
}

// Collectors returns the collectors, to register them elsewhere.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		m.Steps, m.Parks, m.Waits, m.WaitSeconds, m.ParkSeconds, m.Stuck,
		m.Ignored, m.Duplicates, m.BadInput, m.TimersFired, m.TimersStale, m.TimersDue, m.Purged, m.NewerState,
	}
}

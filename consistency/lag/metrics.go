package lag

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metric names, as scraped.
const (
	MetricPositionLag  = "converge_projection_position_lag_events"
	MetricTimeLag      = "converge_projection_time_lag_seconds"
	MetricHeartbeatAge = "converge_projection_heartbeat_age_seconds"
	MetricSLA          = "converge_projection_sla_seconds"
	MetricBreached     = "converge_projection_sla_breached"
	MetricBreaches     = "converge_projection_sla_breaches_total"
	MetricHorizonAge   = "converge_read_horizon_age_seconds"
)

// labelProjection is the label every per-projection metric carries.
const labelProjection = "projection"

// metrics are a Monitor's Prometheus collectors.
type metrics struct {
	positionLag  *prometheus.GaugeVec
	timeLag      *prometheus.GaugeVec
	heartbeatAge *prometheus.GaugeVec
	sla          *prometheus.GaugeVec
	breached     *prometheus.GaugeVec
	breaches     *prometheus.CounterVec
	horizonAge   prometheus.Gauge
}

func newMetrics() *metrics {
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, []string{labelProjection})
	}
	return &metrics{
		positionLag:  gauge(MetricPositionLag, "Events after the projection's checkpoint up to the head of the feed."),
		timeLag:      gauge(MetricTimeLag, "How long the projection's oldest unprocessed event has been waiting; 0 when caught up."),
		heartbeatAge: gauge(MetricHeartbeatAge, "Seconds since the projection's lease holder last renewed or committed."),
		sla:          gauge(MetricSLA, "Time lag the projection may reach without breaching its SLA."),
		breached:     gauge(MetricBreached, "1 while the projection breaches its SLA, else 0."),
		breaches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricBreaches,
			Help: "Times the projection started breaching its SLA.",
		}, []string{labelProjection}),
		horizonAge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricHorizonAge,
			Help: "Seconds the oldest open transaction has been holding event delivery back; 0 when none is.",
		}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.positionLag, m.timeLag, m.heartbeatAge, m.sla, m.breached, m.breaches, m.horizonAge}
}

// register registers every collector or none.
func (m *metrics) register(r prometheus.Registerer) error {
	done := make([]prometheus.Collector, 0, len(m.collectors()))
	for _, c := range m.collectors() {
		if err := r.Register(c); err != nil {
			for _, d := range done {
				r.Unregister(d)
			}
			var dup prometheus.AlreadyRegisteredError
			if errors.As(err, &dup) {
				return fmt.Errorf("lag: register metrics: %w (another Monitor registered them already: give each Monitor its own Registerer)", err)
			}
			return fmt.Errorf("lag: register metrics: %w", err)
		}
		done = append(done, c)
	}
	return nil
}

// observe sets the gauges of one report. The breach gauge and counter are
// moved by the Monitor on transitions only.
func (m *metrics) observe(r Report) {
	m.positionLag.WithLabelValues(r.Name).Set(float64(r.PositionLag))
	m.timeLag.WithLabelValues(r.Name).Set(r.TimeLag.Seconds())
	m.heartbeatAge.WithLabelValues(r.Name).Set(r.HeartbeatAge.Seconds())
	m.sla.WithLabelValues(r.Name).Set(r.SLA.Seconds())
	// Create the series at 0 so dashboards see them before a first breach.
	m.breaches.WithLabelValues(r.Name)
	if !r.Breached {
		m.breached.WithLabelValues(r.Name).Set(0)
	}
}

// forget drops the series of a projection the store no longer lists.
func (m *metrics) forget(name string) {
	for _, v := range []*prometheus.MetricVec{
		m.positionLag.MetricVec, m.timeLag.MetricVec, m.heartbeatAge.MetricVec,
		m.sla.MetricVec, m.breached.MetricVec, m.breaches.MetricVec,
	} {
		v.DeleteLabelValues(name)
	}
}

// Handler serves the metrics of g (a *prometheus.Registry given to
// Config.Registerer, or prometheus.DefaultGatherer) in the Prometheus
// exposition format. Mount it at /metrics.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}

package lag_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
)

// modelProjection is what the package doc says a pass must report for one
// projection, computed from the test's own record of the fake store.
type modelProjection struct {
	target     lag.Target
	checkpoint int       // events processed; 0 when the store does not know the name
	heartbeat  time.Time // zero when never seen
	open       *lag.Breach
	breaches   int
}

// TestBreachRule_Property runs random histories (appends, commits,
// heartbeats, time passing) against Monitors with random SLAs and checks
// every pass against the package doc: the four numbers, the breach rule
// with its reasons, the default StaleHeartbeat (5s), one OnBreach and one
// Warn line per breach however many passes see it, one OnRecover naming
// the reason and start of the breach that ended, and the metrics.
func TestBreachRule_Property(t *testing.T) {
	t.Parallel()
	for seed := range uint64(40) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			t.Parallel()
			runBreachRule(t, seed)
		})
	}
}

func runBreachRule(t *testing.T, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0x1a6))
	// Durations in quarter seconds, so that ages often equal an SLA or the
	// heartbeat bound exactly: equal is within.
	quarters := func(n int) time.Duration { return time.Duration(rng.IntN(n)) * 250 * time.Millisecond }

	cfg := &lag.Config{}
	// The default the package doc gives, in half the runs.
	stale := 5 * time.Second
	switch rng.IntN(4) {
	case 0:
		stale = 250*time.Millisecond + quarters(40)
		cfg.StaleHeartbeat = stale
	case 1:
		stale = -1
		cfg.StaleHeartbeat = stale
	}
	models := make([]*modelProjection, 1+rng.IntN(3))
	for i := range models {
		tg := lag.Target{Name: fmt.Sprintf("p%d", i), SLA: 250*time.Millisecond + quarters(40), Class: []string{"", "analytics"}[rng.IntN(2)]}
		cfg.Projections = append(cfg.Projections, tg)
		models[i] = &modelProjection{target: tg}
	}
	b := setup(t, cfg)
	var recorded []time.Time // recorded[i] is when event i+1 was appended

	var wantBreaches, wantRecovered []lag.Breach
	for step := range 150 {
		switch r := rng.IntN(10); {
		case r < 3:
			n := 1 + rng.IntN(3)
			for range n {
				recorded = append(recorded, b.clock.Now())
			}
			b.store.append(n)
		case r < 5:
			m := models[rng.IntN(len(models))]
			if rng.IntN(2) == 0 {
				m.checkpoint = len(recorded) // caught up: what comes next is fresh
			} else {
				m.checkpoint += rng.IntN(len(recorded) - m.checkpoint + 1)
			}
			m.heartbeat = b.clock.Now()
			b.store.commit(m.target.Name, token(m.checkpoint))
		case r < 8:
			b.clock.Advance(quarters(12))
		default:
			reports, err := b.mon.Check(t.Context())
			require.NoError(t, err)
			require.Len(t, reports, len(models))
			now := b.clock.Now()
			series := b.series(t)
			metric := func(name, projection string) float64 {
				v, ok := series[name+"/"+projection]
				require.True(t, ok, "%s{projection=%q} is not registered", name, projection)
				return v
			}
			for i, m := range models {
				r := reports[i]
				msg := fmt.Sprintf("seed %d, step %d, %s", seed, step, m.target.Name)
				require.Equal(t, m.target.Name, r.Name, msg)
				require.Equal(t, m.target.Class, r.Class, msg)
				require.Equal(t, m.target.SLA, r.SLA, msg)
				require.Equal(t, token(m.checkpoint), r.Checkpoint, msg)
				require.Equal(t, token(len(recorded)), r.Head, msg)
				require.Equal(t, now, r.At, msg)

				behind := int64(len(recorded) - m.checkpoint)
				var timeLag, hbAge time.Duration
				if behind > 0 {
					timeLag = now.Sub(recorded[m.checkpoint])
				}
				if !m.heartbeat.IsZero() {
					hbAge = now.Sub(m.heartbeat)
				}
				require.Equal(t, behind, r.PositionLag, msg)
				require.Equal(t, timeLag, r.TimeLag, msg)
				require.Equal(t, hbAge, r.HeartbeatAge, msg)

				var reason lag.Reason
				switch {
				case timeLag > m.target.SLA:
					reason = lag.ReasonTimeLag
				case stale >= 0 && behind > 0 && hbAge > stale:
					reason = lag.ReasonStalled
				}
				require.Equal(t, reason, r.Reason, "%s: time lag %s, SLA %s, heartbeat %s, stale after %s", msg, timeLag, m.target.SLA, hbAge, stale)
				require.Equal(t, reason != "", r.Breached, msg)
				if reason == "" {
					require.Empty(t, r.Reason, msg)
				}

				switch {
				case r.Breached && m.open == nil:
					m.open = &lag.Breach{Report: r, Reason: reason, Since: now, At: now}
					m.breaches++
					wantBreaches = append(wantBreaches, *m.open)
				case !r.Breached && m.open != nil:
					wantRecovered = append(wantRecovered, lag.Breach{Report: r, Reason: m.open.Reason, Since: m.open.Since, At: now})
					m.open = nil
				}
				breached := 0.0
				if m.open != nil {
					breached = 1
				}
				require.Equal(t, breached, metric(lag.MetricBreached, m.target.Name), msg)
				require.Equal(t, float64(m.breaches), metric(lag.MetricBreaches, m.target.Name), msg)
				require.Equal(t, timeLag.Seconds(), metric(lag.MetricTimeLag, m.target.Name), msg)
				require.Equal(t, float64(behind), metric(lag.MetricPositionLag, m.target.Name), msg)
				require.Equal(t, hbAge.Seconds(), metric(lag.MetricHeartbeatAge, m.target.Name), msg)
				require.Equal(t, m.target.SLA.Seconds(), metric(lag.MetricSLA, m.target.Name), msg)
			}
			b.hooks.mu.Lock()
			gotBreaches, gotRecovered := append([]lag.Breach(nil), b.hooks.breaches...), append([]lag.Breach(nil), b.hooks.recovered...)
			b.hooks.mu.Unlock()
			require.Equal(t, wantBreaches, gotBreaches, "seed %d, step %d: OnBreach calls", seed, step)
			require.Equal(t, wantRecovered, gotRecovered, "seed %d, step %d: OnRecover calls", seed, step)
			logs := b.logs.String()
			require.Equal(t, len(wantBreaches), strings.Count(logs, "level=WARN msg=\"lag: projection breaches its SLA\""), "seed %d", seed)
			require.Equal(t, len(wantRecovered), strings.Count(logs, "level=INFO msg=\"lag: projection is back within its SLA\""), "seed %d", seed)
		}
	}
}

// series gathers every per-projection series of the bundle's registry at
// once, keyed "metric/projection".
func (b bundle) series(t *testing.T) map[string]float64 {
	t.Helper()
	mfs, err := b.reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() != "projection" {
					continue
				}
				v := m.GetGauge().GetValue()
				if m.GetCounter() != nil {
					v = m.GetCounter().GetValue()
				}
				out[mf.GetName()+"/"+l.GetValue()] = v
			}
		}
	}
	return out
}

package pgstore

import (
	"log/slog"
	"sync"
	"time"
)

// outageLogEvery is how often a connection that keeps failing is reported
// again while it stays down.
const outageLogEvery = 30 * time.Second

// outageLog rate-limits the logs of a background connection that keeps
// failing. A database that is down for a minute makes the listener retry
// every ListenReconnectDelay; one WARN per attempt buries everything else
// in the log. Instead the first failure of an outage is logged at WARN,
// repeats are summarised at most once per outageLogEvery (how many, the
// last error), and the recovery is logged once, at INFO, with how long it
// took.
type outageLog struct {
	log  *slog.Logger
	what string // e.g. "listen connection"
	down string // what the first WARN adds about the consequences
	now  func() time.Time

	mu         sync.Mutex
	since      time.Time // zero while healthy
	failures   int       // in the current outage
	lastReport time.Time
	unreported int
}

func newOutageLog(log *slog.Logger, what, down string) *outageLog {
	return &outageLog{log: log, what: what, down: down, now: time.Now}
}

// failed records one failure.
func (o *outageLog) failed(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.now()
	o.failures++
	if o.since.IsZero() {
		o.since, o.lastReport, o.unreported = now, now, 0
		o.log.Warn("converge: "+o.what+" failed; "+o.down, "err", err)
		return
	}
	o.unreported++
	if now.Sub(o.lastReport) < outageLogEvery {
		return
	}
	o.log.Warn("converge: "+o.what+" still failing", "err", err,
		"down_for", now.Sub(o.since).Round(time.Millisecond), "failures_since_last_report", o.unreported, "failures", o.failures)
	o.lastReport, o.unreported = now, 0
}

// recovered records a success; it logs only when it ends an outage.
func (o *outageLog) recovered() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		return
	}
	o.log.Info("converge: "+o.what+" recovered",
		"down_for", o.now().Sub(o.since).Round(time.Millisecond), "failures", o.failures)
	o.since, o.failures, o.unreported = time.Time{}, 0, 0
}

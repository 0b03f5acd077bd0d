package faulttest

import (
	"slices"
	"sync"
	"time"

	"github.com/converge-es/converge/internal/signal"
)

// Report kinds FailoverMeter understands. A worker sends ReportLease with
// the feed.LeaseEventKind ("acquired", "lost", "released") when its
// consumer's lease changes, and ReportDelivering once its first unit of
// work commits after acquiring.
const (
	ReportLease      = "lease"
	ReportDelivering = "delivering"
)

// FailoverMeter follows which process holds a feed lease, from its
// workers' reports, and measures failovers: from the kill of the holder
// to the first delivery by any process (a standby, or the victim itself
// once restarted). Feed it every Report (ProcessConfig.OnReport) and every
// Kill (ChaosConfig.OnKill).
type FailoverMeter struct {
	mu      sync.Mutex
	holder  int // pid of the holding process, 0 when none is known
	killed  *Kill
	results []time.Duration
	losses  int
	changed signal.Broadcast
}

// Observe takes a worker's report.
func (m *FailoverMeter) Observe(r Report) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case r.Kind == ReportLease && r.Value == "acquired":
		m.holder = r.Pid
	case r.Kind == ReportLease && m.holder == r.Pid:
		m.holder = 0
		if r.Value == "lost" {
			m.losses++
		}
	case r.Kind == ReportDelivering && m.killed != nil && r.Pid != m.killed.Pid:
		m.results = append(m.results, r.At.Sub(m.killed.At))
		m.killed = nil
	}
	m.changed.Notify()
}

// Killed takes a kill; it starts a measurement when the victim held the
// lease.
func (m *FailoverMeter) Killed(k Kill) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if k.Pid == m.holder && m.killed == nil {
		m.killed = &k
		m.holder = 0
	}
}

// Holder is the pid of the process holding the lease, 0 when unknown.
func (m *FailoverMeter) Holder() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.holder
}

// Measuring reports whether a failover is being measured (the holder was
// killed and nobody delivers yet).
func (m *FailoverMeter) Measuring() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.killed != nil
}

// Changed returns a channel closed at the next report.
func (m *FailoverMeter) Changed() <-chan struct{} { return m.changed.C() }

// Losses counts leases the holder lost while alive (taken over after its
// renewals failed for a LeaseTTL, e.g. while the database was down).
func (m *FailoverMeter) Losses() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.losses
}

// Failovers returns the measured failovers, shortest first.
func (m *FailoverMeter) Failovers() []time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := slices.Clone(m.results)
	slices.Sort(out)
	return out
}

package web

import (
	"cmp"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/converge-es/converge/consistency/lag"
)

// Defaults of LagHistoryConfig.
const (
	// DefaultLagWindow is how far back the dashboard's lag chart reaches.
	DefaultLagWindow = 5 * time.Minute
	// DefaultLagPoints caps the samples kept per projection: one a second
	// over DefaultLagWindow.
	DefaultLagPoints = 300
	// MinLagStaleAfter is the least LagSeries.StaleAfterMillis: how old a
	// projection's latest sample may get before the dashboard stops
	// showing its verdict as the current one.
	MinLagStaleAfter = 5 * time.Second
)

// LagHistoryConfig configures a LagHistory.
type LagHistoryConfig struct {
	// Window is how old a sample may get before it is dropped. 0 means
	// DefaultLagWindow (5m); NewLagHistory refuses a negative one.
	Window time.Duration
	// MaxPoints caps the samples kept per projection; the oldest go first.
	// 0 means DefaultLagPoints (300); NewLagHistory refuses a negative
	// one.
	MaxPoints int
}

// LagHistory keeps the last minutes of lag reports per projection, in a
// ring buffer each, for the dashboard's chart. Feed it with Follow (every
// pass of a started lag.Monitor) or Record. It is safe for concurrent use.
type LagHistory struct {
	cfg LagHistoryConfig

	mu    sync.Mutex
	order []string // projections in first-seen order
	byKey map[string]*lagSeries
}

type lagSeries struct {
	last   lag.Report
	points []LagPoint // ring buffer, cap MaxPoints
	next   int        // where the next point goes once full
}

// LagPoint is one sample of a projection's lag.
type LagPoint struct {
	// At is the sample's time, in Unix milliseconds.
	At int64 `json:"t"`
	// TimeLagMillis is how long the oldest unprocessed event had waited.
	TimeLagMillis int64 `json:"lag_ms"`
	// Behind is how many events the projection had not processed.
	Behind int64 `json:"behind"`
	// Breached reports whether the sample breached the SLA.
	Breached bool `json:"breached,omitempty"`
}

// LagSeries is one projection's recent lag, as GET /api/lag returns it.
type LagSeries struct {
	Name  string `json:"name"`
	Class string `json:"class,omitempty"`
	// SLAMillis is the projection's SLA.
	SLAMillis int64 `json:"sla_ms"`
	// Breached and Reason are the latest sample's verdict.
	Breached bool   `json:"breached"`
	Reason   string `json:"reason,omitempty"`
	// Behind and TimeLagMillis are the latest sample's lag.
	Behind        int64 `json:"behind"`
	TimeLagMillis int64 `json:"lag_ms"`
	// SampledAt is when the latest sample was taken, in Unix milliseconds
	// (0 when it has no time): Breached, Behind and TimeLagMillis are as of
	// then. A lag monitor whose passes fail leaves its last good sample,
	// which grows old.
	SampledAt int64 `json:"sampled_at"`
	// StaleAfterMillis is how old the latest sample may get (LagSnapshot.Now
	// minus SampledAt) before its verdict no longer describes the present:
	// lag.OverdueAfter times the shortest gap between the kept samples (the
	// monitor's interval), and at least MinLagStaleAfter.
	StaleAfterMillis int64 `json:"stale_after_ms"`
	// Points are the samples within the window, oldest first.
	Points []LagPoint `json:"points"`
}

// LagSnapshot is the body of GET /api/lag.
type LagSnapshot struct {
	// WindowMillis is how far back Points reach at most.
	WindowMillis int64 `json:"window_ms"`
	// Now is when the snapshot was taken, in Unix milliseconds.
	Now         int64       `json:"now"`
	Projections []LagSeries `json:"projections"`
}

// NewLagHistory returns an empty LagHistory. A nil cfg means the defaults.
// It fails only for a negative Window or MaxPoints.
func NewLagHistory(cfg *LagHistoryConfig) (*LagHistory, error) {
	var c LagHistoryConfig
	if cfg != nil {
		c = *cfg
	}
	switch {
	case c.Window < 0:
		return nil, fmt.Errorf("web: LagHistoryConfig.Window is %s: use 0 for the default (%s) or a positive duration", c.Window, DefaultLagWindow)
	case c.MaxPoints < 0:
		return nil, fmt.Errorf("web: LagHistoryConfig.MaxPoints is %d: use 0 for the default (%d) or a positive number", c.MaxPoints, DefaultLagPoints)
	}
	return newLagHistory(c), nil
}

// newLagHistory is NewLagHistory for a cfg known to be valid.
func newLagHistory(c LagHistoryConfig) *LagHistory {
	c.Window = cmp.Or(c.Window, DefaultLagWindow)
	c.MaxPoints = cmp.Or(c.MaxPoints, DefaultLagPoints)
	return &LagHistory{cfg: c, byKey: map[string]*lagSeries{}}
}

// Record adds one pass's reports. A report equal to its projection's last
// (a failed pass leaves the last good pass's reports) adds no point.
func (h *LagHistory) Record(reports []lag.Report) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range reports {
		s, ok := h.byKey[r.Name]
		if !ok {
			// Room for the default's points at most: a MaxPoints of
			// millions is a cap, not memory to take before any sample.
			s = &lagSeries{points: make([]LagPoint, 0, min(h.cfg.MaxPoints, DefaultLagPoints))}
			h.byKey[r.Name] = s
			h.order = append(h.order, r.Name)
		} else if r == s.last {
			// The same sample again: a failed pass leaves the last good
			// one's reports, which are not a new point on the chart.
			continue
		}
		s.last = r
		p := LagPoint{At: r.At.UnixMilli(), TimeLagMillis: r.TimeLag.Milliseconds(), Behind: r.PositionLag, Breached: r.Breached}
		if len(s.points) < h.cfg.MaxPoints {
			s.points = append(s.points, p)
			continue
		}
		s.points[s.next] = p
		s.next = (s.next + 1) % h.cfg.MaxPoints
	}
}

// Follow records the reports of every pass mon runs until ctx ends. Run it
// in its own goroutine beside a started Monitor.
func (h *LagHistory) Follow(ctx context.Context, mon *lag.Monitor) {
	EachPass(ctx, mon, h.Record)
}

// EachPass calls fn with mon's reports after every pass it runs, until ctx
// ends. A failed pass leaves the reports of the last successful one, which
// fn then sees again (with their time; Record keeps a report equal to a
// projection's last one once). Passes that end while fn runs are
// taken together: fn sees the newest reports.
func EachPass(ctx context.Context, mon *lag.Monitor, fn func([]lag.Report)) {
	for {
		// Taken before the pass it waits for, so no pass is missed between
		// recording one and waiting for the next.
		passed := mon.Passed()
		select {
		case <-ctx.Done():
			return
		case <-passed:
			fn(mon.Reports())
		}
	}
}

// Snapshot returns every projection's samples within the window that ends
// at now.
func (h *LagHistory) Snapshot(now time.Time) LagSnapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	from := now.Add(-h.cfg.Window).UnixMilli()
	out := LagSnapshot{WindowMillis: h.cfg.Window.Milliseconds(), Now: now.UnixMilli(), Projections: make([]LagSeries, 0, len(h.order))}
	for _, name := range h.order {
		s := h.byKey[name]
		ls := LagSeries{
			Name: name, Class: s.last.Class, SLAMillis: s.last.SLA.Milliseconds(),
			Breached: s.last.Breached, Reason: string(s.last.Reason),
			Behind: s.last.PositionLag, TimeLagMillis: s.last.TimeLag.Milliseconds(),
			Points: make([]LagPoint, 0, len(s.points)),
		}
		if !s.last.At.IsZero() {
			ls.SampledAt = s.last.At.UnixMilli()
		}
		// Oldest first: from next to the end, then from the start.
		points := append(s.points[s.next:len(s.points):len(s.points)], s.points[:s.next]...)
		for _, p := range points {
			if p.At >= from {
				ls.Points = append(ls.Points, p)
			}
		}
		ls.StaleAfterMillis = staleAfter(points).Milliseconds()
		out.Projections = append(out.Projections, ls)
	}
	return out
}

// staleAfter is how old the newest of points (oldest first) may get before
// it no longer describes the present: lag.OverdueAfter times the shortest
// gap between two of them, which is the monitor's interval when its
// passes succeed (a failed pass adds no point, and a gap), and at least
// MinLagStaleAfter.
func staleAfter(points []LagPoint) time.Duration {
	var gap int64
	for i := 1; i < len(points); i++ {
		if d := points[i].At - points[i-1].At; d > 0 && (gap == 0 || d < gap) {
			gap = d
		}
	}
	// Held to a day, so that samples stamped centuries apart (a zero time
	// among them) cannot overflow a Duration.
	gap = min(gap, (24 * time.Hour).Milliseconds())
	return max(MinLagStaleAfter, lag.OverdueAfter*time.Duration(gap)*time.Millisecond)
}

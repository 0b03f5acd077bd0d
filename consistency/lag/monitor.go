package lag

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/signal"
)

// Monitor samples how far projections are behind the event store, judges
// each against its SLA, and publishes the result as reports, hooks, log
// lines and Prometheus metrics. See the package doc for what it measures.
//
// Run passes yourself with Check, or every Config.Interval with Start. A
// Monitor is safe for concurrent use; passes never overlap.
type Monitor struct {
	src     feed.Inspector
	cfg     Config
	metrics *metrics

	// pass serialises passes, so breach transitions are seen once.
	pass sync.Mutex
	// breaches holds the open breach of each projection. Guarded by pass.
	breaches map[string]*Breach
	// seen is the projections the last pass reported. Guarded by pass.
	seen map[string]bool

	mu   sync.Mutex
	last []Report
	// lastErr is the last pass's error (nil when it succeeded) and lastOK
	// when the last successful pass sampled. Guarded by mu.
	lastErr error
	lastOK  time.Time

	passed signal.Broadcast

	life    sync.Mutex
	state   int // stateIdle, stateRunning or stateStopped
	cancel  context.CancelFunc
	stopped chan struct{}
}

const (
	stateIdle = iota
	stateRunning
	stateStopped
)

// epoch is the heartbeat a store reports for a name that never had one
// (pgstore says 'epoch' for NULL); such heartbeats are unknown, not old.
var epoch = time.Unix(0, 0)

// NewMonitor returns a Monitor over src (a *pgstore.Store or a
// *memstore.Store). When cfg.Registerer is set the metrics are registered
// there at once.
func NewMonitor(src feed.Inspector, cfg *Config) (*Monitor, error) {
	if src == nil {
		return nil, errors.New("lag: NewMonitor needs a feed.Inspector (a *pgstore.Store or *memstore.Store)")
	}
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	m := &Monitor{
		src:      src,
		cfg:      c,
		metrics:  newMetrics(),
		breaches: map[string]*Breach{},
		seen:     map[string]bool{},
		stopped:  make(chan struct{}),
	}
	if c.Registerer != nil {
		if err := m.metrics.register(c.Registerer); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Check runs one pass now and returns its reports, in Config.Projections
// order (or by name when watching every consumer). Breach hooks, logs and
// metrics fire as they would from the loop. The pass is bounded by
// Config.PassTimeout. On error nothing changes: Reports still returns the
// previous pass (and LastPass reports the error, unless ctx ended first,
// cancelled or past its deadline: a pass its caller gave up on is no
// failure of the store).
func (m *Monitor) Check(ctx context.Context) ([]Report, error) {
	m.pass.Lock()
	defer m.pass.Unlock()
	defer m.passed.Notify()
	// The pass's own budget starts once it runs: a Check waiting behind a
	// slow one must not spend it waiting, then record a failure of the
	// store.
	caller := ctx
	ctx, cancel := context.WithTimeout(ctx, m.cfg.PassTimeout)
	defer cancel()

	reports, err := m.sample(ctx)
	if err != nil {
		// A pass its caller ended (Stop, a request gone, a caller's
		// deadline shorter than PassTimeout) says nothing of the store:
		// LastPass, and /healthz from it, stay as they were. A pass over
		// its own PassTimeout does count.
		if caller.Err() == nil {
			m.mu.Lock()
			m.lastErr = err
			m.mu.Unlock()
		}
		return nil, err
	}
	var fire []func()
	for i := range reports {
		fire = append(fire, m.judge(&reports[i])...)
	}
	m.forgetGone(reports)

	m.mu.Lock()
	m.last, m.lastErr, m.lastOK = reports, nil, m.cfg.Clock.Now()
	if len(reports) > 0 {
		m.lastOK = reports[0].At
	}
	m.mu.Unlock()
	// Hooks run last, when Reports already answers with this pass.
	for _, f := range fire {
		f()
	}
	return cloneReports(reports), nil
}

// Reports returns the reports of the last successful pass; nil before the
// first.
func (m *Monitor) Reports() []Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	return cloneReports(m.last)
}

// LastPass says how the last pass ended: its error, nil when it succeeded
// (or none has run), and when the last successful pass sampled (zero
// before one has). Reports keeps the last successful pass's reports, so
// this is what tells a health check that the monitor is failing.
func (m *Monitor) LastPass() (lastSuccess time.Time, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastOK, m.lastErr
}

// OverdueAfter is how many Intervals may pass without a successful pass
// before Overdue says so.
const OverdueAfter = 3

// Overdue reports how long ago (by Config.Clock) the last successful pass
// sampled, and whether that is longer than OverdueAfter Intervals: passes
// then hang or have stopped, and Reports describes the past. A failing
// pass says so itself (LastPass); this catches the passes that never end.
// Zero and false before any pass has succeeded.
func (m *Monitor) Overdue() (age time.Duration, overdue bool) {
	m.mu.Lock()
	last := m.lastOK
	m.mu.Unlock()
	if last.IsZero() {
		return 0, false
	}
	age = m.cfg.Clock.Now().Sub(last)
	// OverdueAfter Intervals overflow a Duration past about 97 years of
	// Interval, and a negative limit would make every age overdue: no age
	// reaches a limit that large.
	if m.cfg.Interval > math.MaxInt64/OverdueAfter {
		return age, false
	}
	return age, age > OverdueAfter*m.cfg.Interval
}

// Passed returns a channel closed when the next pass ends, successful or
// not. Take it before the event you wait for (tests use it to await the
// loop instead of sleeping).
func (m *Monitor) Passed() <-chan struct{} { return m.passed.C() }

// sample queries the store and computes every report, judging nothing.
func (m *Monitor) sample(ctx context.Context) ([]Report, error) {
	head, err := m.src.Head(ctx)
	if err != nil {
		return nil, fmt.Errorf("lag: head of the feed: %w", err)
	}
	consumers, err := m.src.Consumers(ctx)
	if err != nil {
		return nil, fmt.Errorf("lag: list consumers: %w", err)
	}
	horizon, err := m.src.HorizonAge(ctx)
	if err != nil {
		return nil, fmt.Errorf("lag: read horizon age: %w", err)
	}
	byName := make(map[string]feed.ConsumerInfo, len(consumers))
	for _, c := range consumers {
		byName[c.Name] = c
	}
	targets, err := m.targets(ctx, consumers)
	if err != nil {
		return nil, err
	}

	type oldest struct {
		at time.Time
		ok bool
	}
	reports := make([]Report, len(targets))
	olds := make([]oldest, len(targets))
	slowest := make([]feed.ConsumerInfo, len(targets))
	for i, t := range targets {
		c := slowestOf(byName, t)
		slowest[i] = c
		n, err := m.src.CountBetween(ctx, c.Position, head)
		if err != nil {
			return nil, fmt.Errorf("lag: events behind %q: %w", t.Name, err)
		}
		at, ok, err := m.src.OldestAfter(ctx, c.Position)
		if err != nil {
			return nil, fmt.Errorf("lag: oldest event unprocessed by %q: %w", t.Name, err)
		}
		olds[i] = oldest{at, ok}
		reports[i] = Report{
			Name:        t.Name,
			Class:       t.Class,
			Owner:       c.Owner,
			Checkpoint:  c.Position,
			Head:        head,
			PositionLag: n,
			HorizonAge:  horizon,
			SLA:         t.SLA,
		}
	}

	// One "now" for the whole pass, taken after the queries so no event
	// they saw lies in its future.
	now := m.cfg.Clock.Now()
	for i := range reports {
		r := &reports[i]
		r.At = now
		if olds[i].ok {
			r.TimeLag = max(0, now.Sub(olds[i].at))
		}
		if hb := slowest[i].HeartbeatAt; hb.After(epoch) {
			r.HeartbeatAge = max(0, now.Sub(hb))
		}
		r.Reason = m.rule(r)
		r.Breached = r.Reason != ""
	}
	m.metrics.horizonAge.Set(horizon.Seconds())
	return reports, nil
}

// rule is the breach rule: a projection breaches when its oldest
// unprocessed event has waited longer than its SLA, or when it has
// unprocessed events and its heartbeat is older than Config.StaleHeartbeat
// (nobody is working them off, so the SLA is about to go too).
func (m *Monitor) rule(r *Report) Reason {
	switch {
	case r.TimeLag > r.SLA:
		return ReasonTimeLag
	case m.cfg.StaleHeartbeat >= 0 && r.PositionLag > 0 && r.HeartbeatAge > m.cfg.StaleHeartbeat:
		return ReasonStalled
	}
	return ""
}

// judge updates the metrics and the breach state of one report and returns
// the hooks and log lines its transition calls for. Caller holds m.pass.
func (m *Monitor) judge(r *Report) []func() {
	m.metrics.observe(*r)
	open := m.breaches[r.Name]
	switch {
	case r.Breached && open == nil:
		b := &Breach{Report: *r, Reason: r.Reason, Since: r.At, At: r.At}
		m.breaches[r.Name] = b
		m.metrics.breached.WithLabelValues(r.Name).Set(1)
		m.metrics.breaches.WithLabelValues(r.Name).Inc()
		ev := *b
		return []func(){func() {
			m.cfg.Logger.Warn("lag: projection breaches its SLA",
				"projection", r.Name, "reason", string(ev.Reason), "time_lag", r.TimeLag,
				"behind_events", r.PositionLag, "heartbeat_age", r.HeartbeatAge, "sla", r.SLA, "owner", r.Owner)
			if m.cfg.OnBreach != nil {
				m.cfg.OnBreach(ev)
			}
		}}
	case !r.Breached && open != nil:
		delete(m.breaches, r.Name)
		ev := Breach{Report: *r, Reason: open.Reason, Since: open.Since, At: r.At}
		return []func(){func() {
			m.cfg.Logger.Info("lag: projection is back within its SLA",
				"projection", r.Name, "reason", string(ev.Reason), "breached_for", ev.At.Sub(ev.Since),
				"time_lag", r.TimeLag, "sla", r.SLA)
			if m.cfg.OnRecover != nil {
				m.cfg.OnRecover(ev)
			}
		}}
	}
	return nil
}

// forgetGone drops the breach state and the metrics of projections the
// last pass reported and this one does not (a consumer deleted from the
// store while watching every consumer). Caller holds m.pass.
func (m *Monitor) forgetGone(reports []Report) {
	now := make(map[string]bool, len(reports))
	for _, r := range reports {
		now[r.Name] = true
	}
	for name := range m.seen {
		if !now[name] {
			delete(m.breaches, name)
			m.metrics.forget(name)
		}
	}
	m.seen = now
}

// Start runs a pass at once and then every Config.Interval until ctx is
// cancelled or Stop is called. It does not block. A failed pass is logged
// and the next one runs on schedule. A Monitor starts once: a second Start
// returns ErrAlreadyStarted.
func (m *Monitor) Start(ctx context.Context) error {
	m.life.Lock()
	defer m.life.Unlock()
	if m.state != stateIdle {
		return ErrAlreadyStarted
	}
	m.state = stateRunning
	ctx, m.cancel = context.WithCancel(ctx)
	go m.run(ctx)
	return nil
}

func (m *Monitor) run(ctx context.Context) {
	defer close(m.stopped)
	ticker := time.NewTicker(m.cfg.Interval)
	defer ticker.Stop()
	for {
		if _, err := m.Check(ctx); err != nil && ctx.Err() == nil {
			m.cfg.Logger.Warn("lag: pass failed; trying again at the next interval", "error", err, "interval", m.cfg.Interval)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// Stop ends the loop and waits for the pass in flight (bounded by
// Config.PassTimeout) or for ctx. Stopping a Monitor that never started, or
// stopping twice, is harmless.
func (m *Monitor) Stop(ctx context.Context) error {
	m.life.Lock()
	switch m.state {
	case stateIdle:
		m.state = stateStopped
		close(m.stopped)
	case stateRunning:
		m.state = stateStopped
		m.cancel()
	}
	m.life.Unlock()
	// A Monitor already stopped has nothing to wait for, whatever ctx says.
	if err := signal.Await(ctx, m.stopped); err != nil {
		return fmt.Errorf("lag: stop Monitor: %w", err)
	}
	return nil
}

// Collectors returns the monitor's metrics, registered on
// Config.Registerer when one was given: a caller done with the monitor
// unregisters them so that another one can register on the same
// Registerer.
func (m *Monitor) Collectors() []prometheus.Collector { return m.metrics.collectors() }

// Stopped returns a channel closed once the Monitor has stopped: after
// Stop, or after the context given to Start ends.
func (m *Monitor) Stopped() <-chan struct{} { return m.stopped }

func cloneReports(rs []Report) []Report {
	if rs == nil {
		return nil
	}
	// Not append to nil: a pass that found nothing to report is an empty
	// list, not "no pass yet".
	return append(make([]Report, 0, len(rs)), rs...)
}

// watch is one target of a pass.
type watch struct {
	Target
	// start names the checkpoints a processor's earlier partition counts
	// (and its unsplit run) left behind, when its Checkpoints come from its
	// record: one of its current partitions without a checkpoint yet
	// stands at the slowest of them, where it will start. None: at the
	// start of the feed.
	start []string
}

// targets returns what a pass reports on: Config.Projections, or every
// consumer the store lists. Processors split into partitions are reported
// as one target, at their slowest partition, when the store keeps their
// records (feed.ProcessorPartitions): a target named after a processor
// gets its current partitions as Checkpoints, and a listing of every
// consumer groups a processor's current partitions under its name and
// leaves out the checkpoints its earlier partition counts left behind,
// which no longer move and would otherwise breach for ever. Either way a
// current partition with no checkpoint yet stands where it will start, at
// the slowest of the checkpoints left behind (so a listed processor none
// of whose current partitions has a checkpoint is still listed, there).
func (m *Monitor) targets(ctx context.Context, consumers []feed.ConsumerInfo) ([]watch, error) {
	named := m.cfg.Projections
	need := len(named) == 0
	for _, t := range named {
		need = need || len(t.Checkpoints) == 0
	}
	var counts map[string]int
	if src, ok := m.src.(interface{ Rows() feed.Rows }); ok && need {
		var err error
		if counts, err = feed.ProcessorPartitions(ctx, src.Rows()); err != nil {
			return nil, fmt.Errorf("lag: read processor records: %w", err)
		}
	}
	partitions := func(name string) []string {
		n := counts[name]
		if n < 2 {
			return nil
		}
		out := make([]string, n)
		for i := range out {
			out[i] = feed.PartitionName(name, i, n)
		}
		return out
	}
	// leftBehind holds, by processor, the checkpoints its earlier partition
	// counts left behind: where its current partitions start from.
	leftBehind := map[string][]string{}
	for _, c := range consumers {
		if name, ok := leftBehindBy(c.Name, counts); ok {
			leftBehind[name] = append(leftBehind[name], c.Name)
		}
	}
	if len(named) > 0 {
		out := make([]watch, len(named))
		for i, t := range named {
			out[i] = watch{Target: t}
			if len(t.Checkpoints) == 0 {
				out[i].Checkpoints = partitions(t.Name)
				out[i].start = leftBehind[t.Name]
			}
		}
		return out, nil
	}
	out := make([]watch, 0, len(consumers))
	grouped := map[string]bool{}
	add := func(name string) {
		grouped[name] = true
		out = append(out, watch{
			Target: Target{Name: name, SLA: m.cfg.DefaultSLA, Checkpoints: partitions(name)},
			start:  leftBehind[name],
		})
	}
	for _, c := range consumers {
		if _, ok := leftBehindBy(c.Name, counts); ok {
			continue
		}
		name := c.Name
		if base, _, _, ok := feed.ParsePartitionName(name); ok {
			if _, known := counts[base]; known {
				name = base // one of its current partitions
			}
		}
		if rebuildConsumer(name) {
			// A projection's rebuild reads the feed from its start under a
			// consumer of its own while readers use the live one: as a
			// projection of its own it would breach at once, for as long as
			// the rebuild runs.
			continue
		}
		if !grouped[name] {
			add(name)
		}
	}
	// A processor whose current partitions have no checkpoint yet (split
	// again, and they never ran: failing at start, say) would otherwise
	// drop out of the listing just when it is stuck. It is reported where
	// its partitions start.
	for name := range leftBehind {
		if !grouped[name] && !rebuildConsumer(name) {
			add(name)
		}
	}
	slices.SortFunc(out, func(a, b watch) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// leftBehindBy reports the processor whose earlier partition count left
// the checkpoint name behind, by the partition counts of their records: a
// partition of another count than the current one, or the checkpoint a
// split processor had before it was first split.
func leftBehindBy(name string, counts map[string]int) (string, bool) {
	if base, _, n, ok := feed.ParsePartitionName(name); ok {
		if current, known := counts[base]; known {
			return base, n != current
		}
	}
	if n, known := counts[name]; known && n > 1 {
		return name, true
	}
	return "", false
}

// rebuildConsumer reports a projection rebuild's consumer name
// ("orders@rebuild-3"): projection names cannot hold "@".
func rebuildConsumer(name string) bool {
	if base, _, _, ok := feed.ParsePartitionName(name); ok {
		name = base // a split rebuild's partition
	}
	i := strings.LastIndex(name, "@rebuild-")
	if i <= 0 {
		return false
	}
	gen := name[i+len("@rebuild-"):]
	return gen != "" && strings.Trim(gen, "0123456789") == ""
}

// slowestOf returns the consumer a target stands at: its own, or the one of
// its Checkpoints furthest behind (the first such). A name the store does
// not know stands where it will start: at the slowest of w.start, or, when
// there is none, at zero, the start of the feed.
func slowestOf(byName map[string]feed.ConsumerInfo, w watch) feed.ConsumerInfo {
	names := w.Checkpoints
	if len(names) == 0 {
		names = []string{w.Name}
	}
	var low, start feed.ConsumerInfo
	startKnown := false
	for i, name := range names {
		c, ok := byName[name]
		if !ok {
			if !startKnown {
				start, startKnown = slowestKnown(byName, w.start), true
			}
			c = start
		}
		if i == 0 || c.Position.Before(low.Position) {
			low = c
		}
	}
	return low
}

// slowestKnown returns the consumer of names furthest behind (the first
// such) among those the store knows; zero when it knows none, or when an
// earlier partition count of names lacks one of its partitions: a
// partition that never ran stood at the start of the feed, and the feed
// then starts the new partitions there too (it seeds them only from a
// count whose partitions all have checkpoints).
func slowestKnown(byName map[string]feed.ConsumerInfo, names []string) feed.ConsumerInfo {
	var low feed.ConsumerInfo
	found := false
	seen := map[int]map[int]bool{} // partitions seen, by count
	for _, name := range names {
		c, ok := byName[name]
		if !ok {
			continue
		}
		if _, i, n, split := feed.ParsePartitionName(name); split {
			if seen[n] == nil {
				seen[n] = map[int]bool{}
			}
			seen[n][i] = true
		}
		if !found || c.Position.Before(low.Position) {
			low, found = c, true
		}
	}
	for n, parts := range seen {
		if len(parts) < n {
			return feed.ConsumerInfo{}
		}
	}
	return low
}

package lag

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// SLAs for the two kinds of read model most systems have. They are
// suggestions: give each Target the SLA its readers were promised.
const (
	// UserFacingSLA suits a read model a person waits on (a page reloaded
	// after a write). It is the default SLA.
	UserFacingSLA = 2 * time.Second
	// AnalyticsSLA suits a read model nobody waits on (reports, dashboards,
	// exports).
	AnalyticsSLA = 30 * time.Second
)

// Defaults of Config.
const (
	// DefaultSLA is Config.DefaultSLA's default.
	DefaultSLA = UserFacingSLA
	// DefaultInterval is how often a started Monitor samples.
	DefaultInterval = time.Second
	// MinInterval is the shortest Config.Interval: each pass queries every
	// projection's position, so a shorter period would keep the database
	// busy answering passes back to back rather than bound how stale a
	// reading is.
	MinInterval = 10 * time.Millisecond
	// DefaultPassTimeout bounds one pass (all of its queries together).
	DefaultPassTimeout = 5 * time.Second
	// DefaultStaleHeartbeat is how old a behind projection's heartbeat may
	// get before it counts as stalled. It is the feed's default lease TTL:
	// a live runner renews its lease (and so its heartbeat) every third of
	// it, so a heartbeat older than the TTL means nobody is processing.
	DefaultStaleHeartbeat = feed.DefaultLeaseTTL
)

// Target is one projection (feed consumer) the Monitor watches.
type Target struct {
	// Name is the consumer name the projection checkpoints under
	// (feed.SubscriberConfig.ConsumerName). Required.
	Name string
	// SLA is how far behind the projection's readers accept it to be,
	// measured as time lag. Defaults to Config.DefaultSLA.
	SLA time.Duration
	// Class is a free-form label carried into reports, such as
	// "user-facing" or "analytics" (or the consistency catalog's class).
	// Defaults to "".
	Class string
	// Checkpoints are the consumer names the projection is made of when
	// it is split into partitions (feed.Processor.CheckpointNames,
	// projections.Projection.CheckpointNames): it is as far as its
	// slowest partition, whose checkpoint, owner and heartbeat the report
	// carries. A partition listed here that the store does not know yet
	// counts as at the beginning of the feed. Defaults to Name alone, or,
	// for a processor whose record says it is split
	// (feed.ProcessorPartitions), to its current partitions: one of those
	// without a checkpoint yet stands where it will start, at the slowest
	// of the checkpoints its earlier partition counts (or its unsplit run)
	// left behind, or at the beginning of the feed when a partition of an
	// earlier count left none (the feed then seeds no new partition).
	Checkpoints []string
}

// Config configures a Monitor. A nil *Config is ready to use: it watches
// every consumer the store knows with UserFacingSLA.
type Config struct {
	// Projections are the consumers to watch, reported in this order. A
	// watched name the store does not know yet is reported at the
	// beginning of the feed: a projection that never ran is behind
	// everything. Defaults to every consumer the store lists, by name,
	// each with DefaultSLA.
	Projections []Target
	// DefaultSLA is the SLA of a projection that does not set its own.
	// Defaults to DefaultSLA (UserFacingSLA, 2s).
	DefaultSLA time.Duration
	// StaleHeartbeat is how old the heartbeat of a projection with
	// unprocessed events may get before the projection counts as stalled
	// and breached, even while its time lag is within the SLA. A negative
	// value turns this rule off. Defaults to DefaultStaleHeartbeat (5s).
	StaleHeartbeat time.Duration
	// Interval is how often a started Monitor runs a pass. Defaults to
	// DefaultInterval (1s); below MinInterval (10ms) it is refused.
	Interval time.Duration
	// PassTimeout bounds each pass, whether started by the loop or by
	// Check. Defaults to DefaultPassTimeout (5s).
	PassTimeout time.Duration
	// OnBreach is called once when a projection starts breaching, from the
	// goroutine running the pass. It must not block for long and must not
	// call Check. Defaults to nil (only the Warn log and the metrics).
	OnBreach func(Breach)
	// OnRecover is called once when a breaching projection is back within
	// its SLA, with the Breach that ended. Same rules as OnBreach. Defaults
	// to nil (only the Info log and the metrics).
	OnRecover func(Breach)
	// Registerer receives the Monitor's metrics (see the package doc).
	// Registration fails if the same metrics are registered there already:
	// give each Monitor its own registry or run one Monitor per process.
	// Defaults to nil: metrics are kept but not registered anywhere.
	Registerer prometheus.Registerer
	// Logger receives breaches (Warn), recoveries (Info) and failed passes
	// of a started Monitor (Warn). Defaults to slog.Default().
	Logger *slog.Logger
	// Clock is what "now" means when ages are computed. The loop's ticker
	// runs on real time; tests replace the clock and drive passes with
	// Check. Defaults to events.SystemClock.
	Clock events.Clock
}

func (c *Config) withDefaults() Config {
	out := Config{}
	if c != nil {
		out = *c
	}
	out.Projections = append([]Target(nil), out.Projections...)
	out.DefaultSLA = cmp.Or(out.DefaultSLA, DefaultSLA)
	out.StaleHeartbeat = cmp.Or(out.StaleHeartbeat, DefaultStaleHeartbeat)
	out.Interval = cmp.Or(out.Interval, DefaultInterval)
	out.PassTimeout = cmp.Or(out.PassTimeout, DefaultPassTimeout)
	for i := range out.Projections {
		out.Projections[i].SLA = cmp.Or(out.Projections[i].SLA, out.DefaultSLA)
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	if out.Clock == nil {
		out.Clock = events.SystemClock{}
	}
	return out
}

func (c *Config) validate() error {
	switch {
	case c.DefaultSLA < 0:
		return fmt.Errorf("lag: Config.DefaultSLA is %s: use 0 for the default (%s) or a positive duration", c.DefaultSLA, DefaultSLA)
	case c.Interval < 0 || c.Interval > 0 && c.Interval < MinInterval:
		return fmt.Errorf("lag: Config.Interval is %s: use 0 for the default (%s) or at least %s", c.Interval, DefaultInterval, MinInterval)
	case c.PassTimeout < 0:
		return fmt.Errorf("lag: Config.PassTimeout is %s: use 0 for the default (%s) or a positive duration", c.PassTimeout, DefaultPassTimeout)
	}
	seen := make(map[string]bool, len(c.Projections))
	for i, p := range c.Projections {
		switch {
		case p.Name == "":
			return fmt.Errorf("lag: Config.Projections[%d].Name is empty (use the projection's feed consumer name)", i)
		case seen[p.Name]:
			return fmt.Errorf("lag: Config.Projections[%d]: projection %q is listed twice", i, p.Name)
		case p.SLA < 0:
			return fmt.Errorf("lag: Config.Projections[%d] (%q): SLA is %s: use 0 for Config.DefaultSLA or a positive duration", i, p.Name, p.SLA)
		case slices.Contains(p.Checkpoints, ""):
			return fmt.Errorf("lag: Config.Projections[%d] (%q): a checkpoint name is empty (list the partitions' checkpoint names, or none)", i, p.Name)
		}
		seen[p.Name] = true
	}
	return nil
}

// ErrAlreadyStarted is returned by Start on a Monitor that was started or
// stopped before: a Monitor runs once; build a new one to run again.
var ErrAlreadyStarted = errors.New("lag: Monitor was already started (a Monitor runs once; build a new one with NewMonitor)")

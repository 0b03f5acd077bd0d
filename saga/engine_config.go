package saga

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// Defaults of EngineConfig.
const (
	// DefaultGateTimeout bounds the engine's own wait for a step's read
	// models when the runtime did not gate the event: past it the step is
	// parked instead.
	DefaultGateTimeout = 250 * time.Millisecond
	// DefaultSweepInterval is how often parked steps are re-checked in
	// case a wake-up was lost, and stuck ones are reported.
	DefaultSweepInterval = 5 * time.Second
	// DefaultTimerSafetyInterval bounds how long the timer loop sleeps
	// without looking at the timer rows, for timers scheduled by another
	// process whose wake-up it missed.
	DefaultTimerSafetyInterval = 30 * time.Second
	// DefaultConflictRetries is how many times a unit the engine runs by
	// itself (parked steps, operations) is retried after feed.ErrConflict.
	DefaultConflictRetries = 20
	// DefaultRetention is how long an ended instance keeps its history and
	// dedupe records before the sweep purges them.
	DefaultRetention = 7 * 24 * time.Hour
	// MinRetention is the shortest positive EngineConfig.Retention.
	MinRetention = time.Minute
	// DefaultDrainPerTurn is how many steps of one blocked instance the
	// parked-step driver runs before it turns to the next one.
	DefaultDrainPerTurn = 100
)

// Store is what the engine runs on: a memstore.Store or a pgstore.Store.
type Store interface {
	events.Store
	feed.Source
}

// CommandCatalog tells the engine which command types have a handler
// (command.Processor implements it), so a step sending one that has none
// fails visibly instead of leaving the command unread.
type CommandCatalog interface {
	Handles(commandType string) bool
}

// EngineConfig configures an Engine. Store and Sagas are required.
type EngineConfig struct {
	// Store holds the events, the instances (feed.Rows) and the timers.
	Store Store
	// Sagas are the saga types the engine runs.
	Sagas []Definition
	// Tracker follows the read models that handlers declare with Reads.
	// Required when any handler has Reads.
	Tracker *consistency.Tracker
	// Commands, when set, lists the command types that have handlers; a
	// step sending any other type fails its instance with
	// ErrNoCommandHandler. Defaults to nil: no check.
	Commands CommandCatalog
	// Clock is the engine's time source (timers, parks, history). Tests
	// pass a clocktest.Clock and fire timers with Engine.FireDue.
	// Defaults to events.SystemClock.
	Clock events.Clock
	// GateTimeout bounds the engine's own wait for read models, used when
	// the runtime did not gate the event. Defaults to DefaultGateTimeout.
	GateTimeout time.Duration
	// Assigned reports whether this process runs the sagas' work, and
	// returns a channel closed when that may have changed: while it says
	// no, the parked-step driver (RunParked included) leaves parked steps,
	// queued messages and operators' requests to the processes that do.
	// Set it to the IsAssigned of the feed.Processor the engine's Handle
	// runs on (converge.NewClient does): while processes of two builds
	// share that processor, an older build's process stands by, and its
	// driver would otherwise drop a queued message or a timer's firing
	// only the newer build handles, or carry out a cancel without the
	// newer build's OnCancel. Defaults to nil: always.
	Assigned func() (bool, <-chan struct{})
	// SweepInterval is the period of the parked-step sweep. Defaults to
	// DefaultSweepInterval (5s).
	SweepInterval time.Duration
	// TimerSafetyInterval bounds the timer loop's sleep. Defaults to
	// DefaultTimerSafetyInterval (30s).
	TimerSafetyInterval time.Duration
	// ConflictRetries bounds retries after feed.ErrConflict. Defaults to
	// DefaultConflictRetries.
	ConflictRetries int
	// Retention is how long an ended instance (completed, failed for good,
	// cancelled) keeps its per-message rows: the sweep (every
	// SweepInterval, or Engine.PurgeEnded) then deletes its handled
	// (dedupe) records, history, ignored-message records and leftover
	// queued messages, which otherwise grow with every message the engine
	// ever took. The instance row stays as a tombstone, without state or
	// compensations but with its status, end time, token and version: a
	// late or duplicate message (even a redelivered start event) still
	// finds an ended instance and is ignored and recorded as for any ended
	// instance, never starting it again. Engine.Show then says when the
	// history was purged. Running, parked and failed-but-retryable
	// instances are never touched. The same sweep deletes the records of
	// messages ignored longer ago than Retention for ids that have no
	// instance. Defaults to DefaultRetention (7 days); a negative value
	// keeps everything forever (ended instances and ignored messages are
	// still indexed, one small row each, so enabling retention later
	// purges them too). A positive value under
	// MinRetention is refused, as a unit slip (7 for 7 days).
	Retention time.Duration
	// DrainPerTurn bounds how many steps of one instance (its parked step
	// and the messages queued behind it, each in a unit of its own) the
	// parked-step driver runs before it turns to the next instance whose
	// wait is over; the rest run at its next pass, which follows at once.
	// Without a bound, one instance with a long queue, or a burst of
	// messages arriving while it drains, would hold up every other parked
	// instance of the engine. Defaults to DefaultDrainPerTurn (100).
	DrainPerTurn int
	// Registerer receives the engine's Prometheus metrics. Defaults to nil:
	// metrics are kept but not registered (Engine.Metrics still returns
	// them).
	Registerer prometheus.Registerer
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c *EngineConfig) withDefaults() EngineConfig {
	var out EngineConfig
	if c != nil {
		out = *c
	}
	if out.Clock == nil {
		out.Clock = events.SystemClock{}
	}
	out.GateTimeout = cmp.Or(out.GateTimeout, DefaultGateTimeout)
	out.SweepInterval = cmp.Or(out.SweepInterval, DefaultSweepInterval)
	out.TimerSafetyInterval = cmp.Or(out.TimerSafetyInterval, DefaultTimerSafetyInterval)
	out.ConflictRetries = cmp.Or(out.ConflictRetries, DefaultConflictRetries)
	out.Retention = cmp.Or(out.Retention, DefaultRetention)
	out.DrainPerTurn = cmp.Or(out.DrainPerTurn, DefaultDrainPerTurn)
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	return out
}

func (c *EngineConfig) validate() error {
	switch {
	case c.Store == nil:
		return errors.New("saga: EngineConfig.Store is nil (pass a memstore.Store or a pgstore.Store)")
	case len(c.Sagas) == 0:
		return errors.New("saga: EngineConfig.Sagas is empty (define sagas with saga.New)")
	case c.GateTimeout < 0, c.SweepInterval < 0, c.TimerSafetyInterval < 0:
		return fmt.Errorf("saga: EngineConfig durations must not be negative")
	case c.Retention > 0 && c.Retention < MinRetention:
		return fmt.Errorf("saga: EngineConfig.Retention is %s, want at least %s (or 0 for the default, negative to keep everything)", c.Retention, MinRetention)
	case c.ConflictRetries < 0:
		return fmt.Errorf("saga: EngineConfig.ConflictRetries is %d, want >= 1 (or 0 for the default)", c.ConflictRetries)
	case c.DrainPerTurn < 0:
		return fmt.Errorf("saga: EngineConfig.DrainPerTurn is %d, want >= 1 (or 0 for the default)", c.DrainPerTurn)
	}
	return nil
}

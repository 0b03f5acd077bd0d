package saga

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/signal"
)

// Engine runs saga definitions. Its entry points are Handle (the handler of
// every event the sagas consume, run by feed.Processor in a unit of work)
// and Gate (the processor's gate: the read models a step is about to read
// and the token they must reach). Start runs its two background loops:
// the timer loop and the parked-step driver.
type Engine struct {
	cfg EngineConfig
	reg *events.Registry
	// limits are the store's append limits, which a step's commands are
	// checked against before the step changes anything.
	limits  events.Limits
	log     *slog.Logger
	sagas   map[string]*compiled
	byType  map[reflect.Type][]*compiled
	types   []string
	metrics *Metrics
	routes  unitRoutes

	timerWake signal.Broadcast
	parkWake  signal.Broadcast
	// failedSteps remembers steps rolled back for writes their failed
	// handler made through the unit (failed_steps.go).
	failedSteps failedSteps
	watchMu     sync.Mutex
	watching    map[string]*modelWatch // by set of models (driver.go)
	unknown     map[string]bool        // saga types seen in rows but not run here
	startMu     sync.Mutex
	started     bool
	cancel      context.CancelFunc
	wg          sync.WaitGroup

	// sweepTicks, when set before Start (tests), replaces the driver's
	// SweepInterval ticker.
	sweepTicks <-chan time.Time
	// passHook, when set before Start (tests), is called after each pass of
	// the driver with whether the pass ran the retention sweep.
	passHook func(purged bool)
	// timerSleepHook, when set before Start (tests), is called by the timer
	// loop just before it sleeps, with the feed wake-up it sleeps on.
	timerSleepHook func(feedWake <-chan struct{})
}

// TimerFiredType is the stored type name of TimerFired.
const TimerFiredType = "converge.saga.timer_fired"

// TimerFired is the event the engine appends when a timer is due. The
// engine consumes it like any other event on the instance's correlation;
// its id derives from the instance, the timer and its generation, so two
// processes firing the same timer append it once.
type TimerFired struct {
	Saga string `json:"saga"`
	ID   string `json:"id"`
	Name string `json:"name"`
	Gen  int64  `json:"gen"`
	Due  string `json:"due"`
}

// NewEngine compiles the definitions against the store's registry (every
// handled event type must be registered) and registers TimerFired in it.
func NewEngine(cfg *EngineConfig) (*Engine, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	reg := c.Store.Registry()
	if reg == nil {
		return nil, errors.New("saga: the store has no events.Registry")
	}
	if name, _, err := reg.NameOf(TimerFired{}); err != nil {
		if err := events.RegisterSafely[TimerFired](reg, TimerFiredType, 1); err != nil {
			return nil, fmt.Errorf("saga: register %s: %w", TimerFiredType, err)
		}
	} else if name != TimerFiredType {
		return nil, fmt.Errorf("saga: saga.TimerFired is registered as %q, want %q", name, TimerFiredType)
	}
	e := &Engine{
		cfg: c, reg: reg, limits: events.LimitsOf(c.Store), log: c.Logger.With("component", "saga.Engine"),
		sagas: map[string]*compiled{}, byType: map[reflect.Type][]*compiled{},
		watching: map[string]*modelWatch{},
	}
	names := map[string]bool{TimerFiredType: true}
	needTracker := false
	for _, d := range c.Sagas {
		// A *Saga variable never assigned is a nil pointer in a non-nil
		// interface: as nil as an absent definition.
		if d == nil || reflect.ValueOf(d).Kind() == reflect.Pointer && reflect.ValueOf(d).IsNil() {
			return nil, errors.New("saga: EngineConfig.Sagas holds a nil definition")
		}
		comp, err := d.compile(reg)
		if err != nil {
			return nil, fmt.Errorf("saga: %w", err)
		}
		if _, dup := e.sagas[comp.name]; dup {
			return nil, fmt.Errorf("saga: two definitions named %q", comp.name)
		}
		e.sagas[comp.name] = comp
		for t, h := range comp.byType {
			e.byType[t] = append(e.byType[t], comp)
			names[comp.typeNames[t]] = true
			needTracker = needTracker || len(h.reads) > 0
		}
		for _, h := range comp.timeouts {
			needTracker = needTracker || len(h.reads) > 0
		}
	}
	if needTracker && c.Tracker == nil {
		return nil, errors.New("saga: a handler declares saga.Reads but EngineConfig.Tracker is nil (pass the consistency.Tracker that follows those read models)")
	}
	for n := range names {
		e.types = append(e.types, n)
	}
	sort.Strings(e.types)
	m, err := newMetrics(c.Registerer)
	if err != nil {
		return nil, err
	}
	e.metrics = m
	return e, nil
}

// Types returns the stored type names the engine consumes (give them to
// the processor's filter), with every stored alias of them the registry
// knows when it is called (events.Registry Alias): events stored under a
// type's old name reach the handlers of its new one. Register aliases
// before building the processor.
func (e *Engine) Types() []string {
	var out []string
	for _, n := range e.types {
		if stored := e.reg.StoredNames(n); len(stored) > 0 {
			out = append(out, stored...)
		} else {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Handles names what the engine's definitions handle beyond the event
// types of Types, for the processor's feed.ProcessorConfig.Handles: each
// saga type, each of its event handlers (those that start an instance
// apart), timeouts, its OnCancel, and the state versions it reads. Processes of two builds that share the
// processor (a rolling deploy) then split its partitions only among those
// of the build that handles everything the other does: an older process
// never takes, and drops, an event, a timer firing or a newer state only
// the newer build handles (see feed.ProcessorConfig.Handles).
func (e *Engine) Handles() []string {
	var out []string
	for name, s := range e.sagas {
		pre := "saga:" + name
		out = append(out, pre)
		for t := range s.byType {
			// Under every name the type is stored as, as Types: a build that
			// renamed a type and aliased the old name handles all that an
			// older one does.
			n := s.typeNames[t]
			for _, stored := range append(e.reg.StoredNames(n), n) {
				out = append(out, pre+"/on:"+stored)
				if s.byType[t].start {
					out = append(out, pre+"/start:"+stored)
				}
			}
		}
		for timer := range s.timeouts {
			out = append(out, pre+"/timeout:"+timer)
		}
		if s.cancel != nil {
			out = append(out, pre+"/on_cancel")
		}
		for v := 1; v <= s.cfg.stateVersion; v++ {
			out = append(out, fmt.Sprintf("%s/state:%d", pre, v))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Reads returns the read models the definitions' handlers declare with
// Reads, sorted. A step of such a handler runs only once each of its
// models has caught up, so each must be a model something keeps current
// (sagatest refuses a definition that reads a model it was not given).
func (e *Engine) Reads() []string {
	var out []string
	for _, s := range e.sagas {
		for _, h := range s.byType {
			out = append(out, h.reads...)
		}
		for _, h := range s.timeouts {
			out = append(out, h.reads...)
		}
		if s.cancel != nil {
			out = append(out, s.cancel.reads...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// PartitionKey is how the engine's processor must partition the feed:
// by correlation, so one instance's messages stay in order in one place.
func (e *Engine) PartitionKey() feed.PartitionKey { return feed.ByCorrelation }

// Metrics returns the engine's Prometheus metrics.
func (e *Engine) Metrics() *Metrics { return e.metrics }

// Start runs the timer loop and the parked-step driver until Stop. It does
// not block; ctx supplies values only. An Engine starts once: a second
// Start, also after Stop, is refused (build another with NewEngine).
func (e *Engine) Start(ctx context.Context) error {
	e.startMu.Lock()
	defer e.startMu.Unlock()
	if e.started {
		return errors.New("saga: Engine already started (an Engine starts once, also after Stop: build a new one with NewEngine to run again)")
	}
	e.started = true
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	e.wg.Add(2)
	go func() { defer e.wg.Done(); e.timerLoop(lctx) }()
	go func() { defer e.wg.Done(); e.parkLoop(lctx) }()
	return nil
}

// Stop ends the loops and waits for them, or for ctx.
func (e *Engine) Stop(ctx context.Context) error {
	e.startMu.Lock()
	if e.cancel != nil {
		e.cancel()
	}
	e.startMu.Unlock()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

package saga

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/converge-es/converge/events"
)

// Correlate maps an event to the id of the instance it belongs to. It must
// be a pure function of the event: it runs in the gate (before the step's
// unit) and again in the step. Returning "" (or panicking) is an error the
// engine reports and never routes.
type Correlate[E any] func(ev E, env events.Envelope) string

// Handler handles one event for an instance.
type Handler[S, E any] func(s *Step[S], ev E) error

// Option tunes one handler.
type Option func(*handlerDef)

// Reads declares the read models (projection names, as the
// consistency.Tracker knows them) the handler reads. The step runs only
// once each has reached the triggering event's token and the instance's
// causal token; until then it is parked, without holding up other
// instances.
func Reads(models ...string) Option {
	return func(h *handlerDef) { h.reads = append(h.reads, models...) }
}

// Timeout is the event a fired timer delivers to its OnTimeout handler.
type Timeout struct {
	// Name is the timer's name, as given to Step.Schedule.
	Name string
	// Due is when it was scheduled to fire.
	Due time.Time
}

// handlerDef is one StartOn, On or OnTimeout call.
type handlerDef struct {
	goType  reflect.Type // nil for a timeout handler
	timeout string       // "" for an event handler
	cancel  bool         // the OnCancel handler
	start   bool
	reads   []string
	// correlate returns the instance id for a decoded event; it may panic.
	correlate func(v any, env events.Envelope) string
	// run runs the user's handler on a step.
	run func(c *stepCore, v any) error
}

// StartOn makes s start an instance on events of Go type E, or act on the
// live instance when one already has the id that correlate returns. E must
// be registered in the store's events.Registry (NewEngine checks). It
// panics on programmer error; StartOnSafely returns it.
//
// An event whose instance has ended (completed, failed by its own Fail,
// cancelled) starts nothing: instance ids are never reused, so a replay
// or a late duplicate cannot resurrect a finished process. It is ignored,
// counted (converge_saga_ignored_total{reason="ended"}) and recorded in the
// instance's history.
func StartOn[S, E any](s *Saga[S], correlate Correlate[E], h Handler[S, E], opts ...Option) {
	if err := StartOnSafely(s, correlate, h, opts...); err != nil {
		panic(err)
	}
}

// StartOnSafely is StartOn returning the error.
func StartOnSafely[S, E any](s *Saga[S], correlate Correlate[E], h Handler[S, E], opts ...Option) error {
	return addHandler(s, true, correlate, h, opts)
}

// On makes s act on events of Go type E for live instances only. An event
// for an instance that does not exist is ignored, counted
// (converge_saga_ignored_total{reason="no_instance"}), logged and listed
// by Engine.Show under the id it correlated to until
// EngineConfig.Retention has passed; one for an ended instance
// is ignored, counted ({reason="ended"}) and recorded in its history. It
// panics on programmer error; OnSafely returns it.
func On[S, E any](s *Saga[S], correlate Correlate[E], h Handler[S, E], opts ...Option) {
	if err := OnSafely(s, correlate, h, opts...); err != nil {
		panic(err)
	}
}

// OnSafely is On returning the error.
func OnSafely[S, E any](s *Saga[S], correlate Correlate[E], h Handler[S, E], opts ...Option) error {
	return addHandler(s, false, correlate, h, opts)
}

func addHandler[S, E any](s *Saga[S], start bool, correlate Correlate[E], h Handler[S, E], opts []Option) error {
	goType := reflect.TypeFor[E]()
	switch {
	case s == nil:
		return fmt.Errorf("saga: handler for %s: nil saga (define it with saga.New)", goType)
	case correlate == nil:
		return fmt.Errorf("saga %q: handler for %s: nil correlation function", s.name, goType)
	case h == nil:
		return fmt.Errorf("saga %q: handler for %s: nil handler", s.name, goType)
	case goType.Kind() == reflect.Interface || goType.Kind() == reflect.Pointer:
		return fmt.Errorf("saga %q: handler for %s: use the registered event type itself (not an interface or pointer)", s.name, goType)
	case goType == reflect.TypeFor[Timeout]():
		return fmt.Errorf("saga %q: handle timeouts with saga.OnTimeout", s.name)
	}
	def := &handlerDef{
		goType: goType,
		start:  start,
		correlate: func(v any, env events.Envelope) string {
			e, _ := v.(E) // route decoded v as E
			return correlate(e, env)
		},
		run: func(c *stepCore, v any) error {
			e, _ := v.(E)
			st, _ := c.state.(*S) // newState and decodeState return *S
			return h(&Step[S]{core: c, state: st}, e)
		},
	}
	for _, o := range opts {
		o(def)
	}
	if err := validateReads(s.name, def.reads); err != nil {
		return err
	}
	return s.add(def)
}

// OnTimeout handles the timer called name when it fires for an instance
// (Step.Schedule). A timer that was cancelled or rescheduled before its
// firing was consumed is ignored by construction (its generation is no
// longer current) and recorded as stale in the instance's history.
func OnTimeout[S any](s *Saga[S], name string, h Handler[S, Timeout], opts ...Option) {
	if err := OnTimeoutSafely(s, name, h, opts...); err != nil {
		panic(err)
	}
}

// OnTimeoutSafely is OnTimeout returning the error.
func OnTimeoutSafely[S any](s *Saga[S], name string, h Handler[S, Timeout], opts ...Option) error {
	switch {
	case s == nil:
		return fmt.Errorf("saga: OnTimeout(%q): nil saga", name)
	case checkTimerName(name) != nil:
		return fmt.Errorf("saga %q: OnTimeout(%q): %w", s.name, name, checkTimerName(name))
	case h == nil:
		return fmt.Errorf("saga %q: OnTimeout(%q): nil handler", s.name, name)
	}
	def := &handlerDef{
		timeout: name,
		run: func(c *stepCore, v any) error {
			t, _ := v.(Timeout)
			st, _ := c.state.(*S)
			return h(&Step[S]{core: c, state: st}, t)
		},
	}
	for _, o := range opts {
		o(def)
	}
	if err := validateReads(s.name, def.reads); err != nil {
		return err
	}
	return s.add(def)
}

// Cancelled is what an OnCancel handler gets: the reason an operator (or
// the Go API) gave for cancelling the instance.
type Cancelled struct {
	Reason string
}

// OnCancel sets the handler that runs when the instance is cancelled
// (Engine.Cancel, an Operator's RequestCancel, `converge sagas cancel`):
// in the cancel's unit, before the instance ends as cancelled, so what it
// does (send commands, RunCompensations, notes) commits with the cancel or
// not at all. Use it to undo what the process did: release what it
// reserved, refund what it charged. A handler that returns an error, or
// whose writes the store would refuse, fails the cancel and changes
// nothing; so does a step that sends a command (compensations included)
// no command handler handles, when EngineConfig.Commands is set: the
// cancel's error wraps ErrNoCommandHandler and names the command.
// Compensations are checked against the catalog in the step that
// registers them, so one is refused here only when its handler was
// removed after that step committed: deploy the handler again, then
// cancel. The instance ends cancelled whatever the handler decides:
// Complete or Fail in it are ignored (its history says so). Without one, a
// cancel sends nothing, and so does a cancel with
// CancelOptions.SkipOnCancel, which does not run it: the way to end an
// instance whose state only a build that no longer runs can read. It
// panics on programmer error; OnCancelSafely returns it.
func OnCancel[S any](s *Saga[S], h Handler[S, Cancelled]) {
	if err := OnCancelSafely(s, h); err != nil {
		panic(err)
	}
}

// OnCancelSafely is OnCancel returning an error instead of panicking.
func OnCancelSafely[S any](s *Saga[S], h Handler[S, Cancelled]) error {
	switch {
	case s == nil:
		return errors.New("saga: OnCancel: nil saga")
	case h == nil:
		return fmt.Errorf("saga %q: OnCancel: nil handler", s.name)
	}
	return s.add(&handlerDef{
		cancel: true,
		run: func(c *stepCore, v any) error {
			cc, _ := v.(Cancelled)
			st, _ := c.state.(*S)
			return h(&Step[S]{core: c, state: st}, cc)
		},
	})
}

func validateReads(saga string, models []string) error {
	for _, m := range models {
		if m == "" {
			return fmt.Errorf("saga %q: saga.Reads with an empty read-model name", saga)
		}
	}
	return nil
}

// correlateSafely runs a correlation function, turning "" and panics into
// an error that says what to fix.
func correlateSafely(saga string, h *handlerDef, v any, env events.Envelope) (id string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: saga %q: correlation function for %s panicked on event %s: %v (fix the function; the event is not routed)",
				ErrCorrelation, saga, env.Type, env.ID, r)
		}
	}()
	id = h.correlate(v, env)
	switch {
	case id == "":
		return "", fmt.Errorf("%w: saga %q: correlation function for %s returned \"\" for event %s (return the instance id, e.g. the order id)",
			ErrCorrelation, saga, env.Type, env.ID)
	case len(id) > MaxInstanceIDLength:
		return "", fmt.Errorf("%w: saga %q: instance id for event %s is %d bytes, the limit is %d", ErrCorrelation, saga, env.ID, len(id), MaxInstanceIDLength)
	}
	if err := checkText(id); err != nil {
		return "", fmt.Errorf("%w: saga %q: instance id for event %s: %w", ErrCorrelation, saga, env.ID, err)
	}
	return id, nil
}

// MaxTimerNameLength bounds timer names, in bytes: with the longest saga
// name and instance id, a timer's row key still fits.
const MaxTimerNameLength = 100

// checkTimerName is the rule for timer names: 1 to MaxTimerNameLength bytes
// of valid UTF-8 without control characters.
func checkTimerName(name string) error {
	switch {
	case name == "":
		return errors.New("empty timer name")
	case len(name) > MaxTimerNameLength:
		return fmt.Errorf("timer name is %d bytes, the limit is %d", len(name), MaxTimerNameLength)
	}
	if err := checkText(name); err != nil {
		return fmt.Errorf("timer name %w", err)
	}
	return nil
}

// MaxInstanceIDLength bounds instance ids, in bytes: they are parts of row
// keys and stream ids. A correlation function that returns a longer id
// fails the event's delivery with ErrCorrelation, as one that returns "".
const MaxInstanceIDLength = 200

package saga

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sync"
	"time"

	"github.com/converge-es/converge/events"
)

// Defaults of Config.
const (
	// DefaultMaxAttempts is how many times a failing step runs before its
	// instance fails.
	DefaultMaxAttempts = 10
	// DefaultStuckAfter is how long a step may stay parked, waiting for
	// its read models, before the instance is reported stuck.
	DefaultStuckAfter = 5 * time.Minute
	// DefaultRetryBackoff is the first delay before a failed step runs
	// again; it doubles per attempt up to DefaultMaxRetryBackoff.
	DefaultRetryBackoff    = 100 * time.Millisecond
	DefaultMaxRetryBackoff = time.Minute
)

// MaxNameLength is the longest saga name, in bytes.
const MaxNameLength = 100

// sagaName keeps names usable in row keys and stream ids: '/' separates
// key parts.
var sagaName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.\-]*$`)

// Config describes a saga type. The zero value (or nil) is usable.
type Config[S any] struct {
	// Initial returns the state of a new instance. Defaults to S's zero
	// value.
	Initial func() S
	// StateVersion is the schema version of S, stored with every
	// instance's state. Raise it when S changes shape and add an upcaster.
	// A build older than an instance's stored state does not run its
	// steps: it hands each back to wait, with backoff and without counting
	// an attempt, until a newer build runs it (see the package doc,
	// Evolving definitions). Defaults to 1.
	StateVersion int
	// Upcast turns stored state of schema version v (the key) into version
	// v+1, as raw JSON, so instances in flight survive a change of S. The
	// first upcaster is given the state as the step that stored it
	// encoded it, byte for byte on every store (keys in the order S gave
	// them), except in a row an earlier release wrote on PostgreSQL: there
	// it is jsonb's form, compacted (keys reordered, numbers written
	// out), so decode it rather than match on its bytes. An
	// older state that cannot be brought to StateVersion fails its
	// instance (ErrStateDecode). Defaults to none.
	Upcast map[int]func(state json.RawMessage) (json.RawMessage, error)
	// MaxAttempts is how many times a step that returns an error runs
	// before the instance fails. A step that fails once its delivery's
	// context is cancelled (the consumer lost its lease, or the process
	// is stopping) has not used an attempt: its unit rolls back and it
	// runs again. Defaults to DefaultMaxAttempts (10).
	MaxAttempts int
	// RetryBackoff is the delay before the second attempt of a failed step;
	// it doubles per attempt, up to MaxRetryBackoff. Defaults to
	// DefaultRetryBackoff (100ms) and DefaultMaxRetryBackoff (1m).
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	// StuckAfter is how long a step may stay parked waiting for its read
	// models before the instance is reported stuck (it still never runs
	// on stale data). Defaults to DefaultStuckAfter (5m).
	StuckAfter time.Duration
	// Description says what the process does, for readers of the
	// definition. The engine keeps no copy of it: operators see
	// instances by their saga's Name.
	Description string
}

func (c *Config[S]) withDefaults() Config[S] {
	var out Config[S]
	if c != nil {
		out = *c
	}
	out.StateVersion = max(out.StateVersion, 1)
	if out.MaxAttempts == 0 {
		out.MaxAttempts = DefaultMaxAttempts
	}
	if out.RetryBackoff == 0 {
		out.RetryBackoff = DefaultRetryBackoff
	}
	if out.MaxRetryBackoff == 0 {
		out.MaxRetryBackoff = DefaultMaxRetryBackoff
	}
	if out.StuckAfter == 0 {
		out.StuckAfter = DefaultStuckAfter
	}
	return out
}

func (c *Config[S]) validate(name string) error {
	switch {
	case c.MaxAttempts < 1:
		return fmt.Errorf("saga %q: Config.MaxAttempts is %d, want >= 1 (or 0 for the default)", name, c.MaxAttempts)
	case c.RetryBackoff < 0 || c.MaxRetryBackoff < 0:
		return fmt.Errorf("saga %q: Config.RetryBackoff and MaxRetryBackoff must not be negative", name)
	case c.StuckAfter < 0:
		return fmt.Errorf("saga %q: Config.StuckAfter is %s, want > 0 (or 0 for the default)", name, c.StuckAfter)
	}
	for v, f := range c.Upcast {
		if v < 1 || v >= c.StateVersion || f == nil {
			return fmt.Errorf("saga %q: Config.Upcast[%d]: want 1 <= version < StateVersion (%d) and a non-nil func", name, v, c.StateVersion)
		}
	}
	return nil
}

// ValidateName checks a saga name: 1 to MaxNameLength bytes of lower-case
// letters, digits, '_', '.' and '-', starting with a letter or digit.
func ValidateName(name string) error {
	switch {
	case name == "":
		return errors.New("saga: empty saga name (name it after the process, e.g. \"order_fulfilment\")")
	case len(name) > MaxNameLength:
		return fmt.Errorf("saga: name %q is %d bytes, the limit is %d", name, len(name), MaxNameLength)
	case !sagaName.MatchString(name):
		return fmt.Errorf("saga: name %q: use lower-case letters, digits, '_', '.' and '-', starting with a letter or digit", name)
	}
	return nil
}

// Definition is a saga type ready to be run by an Engine: a *Saga[S] of any
// state type.
type Definition interface {
	// Name returns the saga type's stable stored name.
	Name() string
	compile(reg *events.Registry) (*compiled, error)
}

// Saga is the definition of a saga (or process manager) type: a stable
// name, a typed state and typed handlers. Define it once with New, add
// handlers with StartOn, On and OnTimeout, then hand it to NewEngine.
//
// The name is stored with every instance: renaming a saga orphans its
// instances in flight. To rename, define the new name beside the old one,
// let the old one's instances finish (new ones start under the new name),
// then remove it.
type Saga[S any] struct {
	name string
	cfg  Config[S]

	mu       sync.Mutex
	handlers []*handlerDef
}

// New defines a saga type. It panics on an invalid name or Config, a
// programmer error; NewSafely returns the error instead.
func New[S any](name string, cfg *Config[S]) *Saga[S] {
	s, err := NewSafely(name, cfg)
	if err != nil {
		panic(err)
	}
	return s
}

// NewSafely is New returning the error.
func NewSafely[S any](name string, cfg *Config[S]) (*Saga[S], error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	if err := c.validate(name); err != nil {
		return nil, fmt.Errorf("saga: %w", err)
	}
	return &Saga[S]{name: name, cfg: c}, nil
}

// Name returns the saga type's stable name.
func (s *Saga[S]) Name() string { return s.name }

func (s *Saga[S]) add(h *handlerDef) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.handlers {
		if h.cancel && o.cancel {
			return fmt.Errorf("saga %q has two OnCancel handlers (one per saga)", s.name)
		}
		if h.timeout != "" && o.timeout == h.timeout {
			return fmt.Errorf("saga %q handles timeout %q twice (one OnTimeout per name)", s.name, h.timeout)
		}
		if h.goType != nil && o.goType == h.goType {
			return fmt.Errorf("saga %q handles %s twice (one StartOn or On per event type)", s.name, h.goType)
		}
	}
	s.handlers = append(s.handlers, h)
	return nil
}

// newState returns a new instance's state.
func (s *Saga[S]) newState() *S {
	st := new(S)
	if s.cfg.Initial != nil {
		*st = s.cfg.Initial()
	}
	return st
}

// decodeState brings stored state up to the current schema version and
// decodes it.
func (s *Saga[S]) decodeState(raw json.RawMessage, version int) (*S, error) {
	if version > s.cfg.StateVersion {
		// A step never gets here (apply hands it back to wait for a newer
		// build); kept so no caller decodes state it cannot read.
		return nil, fmt.Errorf("%w: stored at schema v%d, this build knows v%d (deploy the newer code)", ErrStateDecode, version, s.cfg.StateVersion)
	}
	for v := max(version, 1); v < s.cfg.StateVersion; v++ {
		up, ok := s.cfg.Upcast[v]
		if !ok {
			return nil, fmt.Errorf("%w: no Config.Upcast[%d] (stored v%d, current v%d)", ErrStateDecode, v, version, s.cfg.StateVersion)
		}
		var err error
		if raw, err = upcastSafely(up, raw); err != nil {
			return nil, fmt.Errorf("%w: Config.Upcast[%d]: %w", ErrStateDecode, v, err)
		}
	}
	st := new(S)
	// The state type's own UnmarshalJSON is user code: a panic in it fails
	// the instances it cannot read (as an upcaster's does), not the unit
	// they share with others, the driver's goroutine or an operator's
	// cancel.
	if err := recovered("the state's UnmarshalJSON", func() error { return json.Unmarshal(raw, st) }); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStateDecode, err)
	}
	return st, nil
}

func (s *Saga[S]) compile(reg *events.Registry) (*compiled, error) {
	s.mu.Lock()
	defs := append([]*handlerDef(nil), s.handlers...)
	s.mu.Unlock()
	if len(defs) == 0 {
		return nil, fmt.Errorf("saga %q has no handlers (add them with saga.StartOn, saga.On and saga.OnTimeout)", s.name)
	}
	c := &compiled{
		name:        s.name,
		byType:      map[reflect.Type]*handlerDef{},
		typeNames:   map[reflect.Type]string{},
		readsByName: map[string][]string{},
		timeouts:    map[string]*handlerDef{},
		cfg: compiledConfig{
			maxAttempts: s.cfg.MaxAttempts, backoff: s.cfg.RetryBackoff, maxBackoff: s.cfg.MaxRetryBackoff,
			stuckAfter: s.cfg.StuckAfter, stateVersion: s.cfg.StateVersion,
		},
		newState: func() any { return s.newState() },
		decodeState: func(raw json.RawMessage, v int) (any, error) {
			return s.decodeState(raw, v)
		},
	}
	starts := 0
	for _, h := range defs {
		if h.cancel {
			c.cancel = h
			continue
		}
		if h.timeout != "" {
			c.timeouts[h.timeout] = h
			continue
		}
		name, _, err := reg.NameOf(reflect.Zero(h.goType).Interface())
		if err != nil {
			return nil, fmt.Errorf("saga %q handles %s: %w", s.name, h.goType, err)
		}
		if h.start {
			starts++
		}
		c.byType[h.goType] = h
		c.typeNames[h.goType] = name
		c.readsByName[name] = h.reads
	}
	if starts == 0 {
		return nil, fmt.Errorf("saga %q has no StartOn handler, so no instance can ever start", s.name)
	}
	return c, nil
}

// compiled is a saga bound to one engine's registry.
type compiled struct {
	name        string
	byType      map[reflect.Type]*handlerDef
	typeNames   map[reflect.Type]string // canonical stored names
	readsByName map[string][]string     // the models each handler reads, by canonical stored name
	timeouts    map[string]*handlerDef
	cancel      *handlerDef // nil without OnCancel
	cfg         compiledConfig
	newState    func() any
	decodeState func(raw json.RawMessage, version int) (any, error)
}

// state returns in's state: a new one for an instance that has none yet,
// else its stored state brought up to the current schema version. An
// instance saved before its first step committed (parked at its gate, or
// retried) stores its state as JSON null, which loads back as the bytes
// "null", not as nil: decoded, it would hand the handler S's zero value
// instead of Config.Initial's.
func (c *compiled) state(in *instance) (any, error) {
	if !in.hasState() {
		var st any
		if err := recovered("Config.Initial", func() error { st = c.newState(); return nil }); err != nil {
			return nil, fmt.Errorf("saga %q: %w", c.name, err)
		}
		return st, nil
	}
	return c.decodeState(json.RawMessage(in.State), in.StateVersion)
}

type compiledConfig struct {
	maxAttempts  int
	backoff      time.Duration
	maxBackoff   time.Duration
	stuckAfter   time.Duration
	stateVersion int
}

// retryDelay is the backoff before attempt n+1.
func (c compiledConfig) retryDelay(attempts int) time.Duration {
	d := c.backoff
	for i := 1; i < attempts && d < c.maxBackoff; i++ {
		if d > c.maxBackoff/2 {
			// Doubling would pass the cap, and near the largest duration
			// overflow to a negative delay: a retry at once, every time.
			return c.maxBackoff
		}
		d *= 2
	}
	return min(d, c.maxBackoff)
}

// upcastSafely runs an upcaster, turning a panic into its error: a bug in
// one upcaster fails the instances it cannot bring forward (ErrStateDecode),
// not the unit they share with others or the driver's goroutine.
// recovered runs fn, user code named what, and turns a panic in it into an
// error that names it.
func recovered(what string, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s panicked: %v (fix it; the instance can then be retried)", what, r)
		}
	}()
	return fn()
}

func upcastSafely(up func(json.RawMessage) (json.RawMessage, error), raw json.RawMessage) (out json.RawMessage, err error) {
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("the upcaster panicked: %v (fix it; the instance waits for a retry)", r)
		}
	}()
	return up(raw)
}

package projections

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// DefaultSLA is the propagation delay an Eventual projection is declared to
// stay within when Config.SLA is zero: short enough for user-facing reads.
const DefaultSLA = 2 * time.Second

// MaxNameLength is the longest projection name, in bytes.
const MaxNameLength = 100

// projectionName keeps names safe to use as consumer and checkpoint names:
// "@" and "/" are reserved for the rebuild consumer ("name@rebuild-2") and
// feed category checkpoints.
var projectionName = regexp.MustCompile(`^[a-z0-9][a-z0-9_.\-]*$`)

// Config describes a projection. The zero value (or a nil *Config) is an
// eventually consistent projection with the default SLA.
type Config struct {
	// Class says how the projection is fed. consistency.Eventual
	// projections are fed by the global feed after the events commit;
	// readers who need their own writes wait on a consistency token.
	// consistency.Strong projections are also applied inside the append's
	// own unit of work, by an append hook the Runner installs on the store,
	// so a read right after the append sees them. Defaults to
	// consistency.Eventual.
	Class consistency.Class
	// SLA is how long an Eventual projection may lag behind the feed, as
	// declared in the consistency.Catalog. It must be zero for Strong
	// projections. Defaults to DefaultSLA (2s) for Eventual projections.
	SLA time.Duration
	// Description says what the read model answers, for the catalog.
	// Defaults to "".
	Description string
	// Partitions splits the projection's processor into this many
	// partitions by a hash of PartitionKey, applied in parallel (see
	// feed.ProcessorConfig.Partitions); its position, for the Tracker and
	// for token waits, is the lowest of its partitions'. Only split a
	// projection whose rows are each written by the events of one key
	// (one stream, by default): two partitions writing the same row would
	// race. Changing it carries the position over, each event still
	// applied once (see feed.ProcessorConfig.Partitions); stop the
	// processes running the old count first. Defaults to 1.
	Partitions int
	// PartitionKey is what partitions hash. Defaults to feed.ByStream.
	PartitionKey feed.PartitionKey
}

func (c *Config) withDefaults() Config {
	out := Config{}
	if c != nil {
		out = *c
	}
	if out.Class == "" {
		out.Class = consistency.Eventual
	}
	if out.Class == consistency.Eventual && out.SLA == 0 {
		out.SLA = DefaultSLA
	}
	out.Partitions = cmp.Or(out.Partitions, 1)
	out.PartitionKey = cmp.Or(out.PartitionKey, feed.ByStream)
	return out
}

func (c *Config) validate(name string) error {
	switch {
	case c.Class != consistency.Eventual && c.Class != consistency.Strong:
		return fmt.Errorf("projections: projection %q: Config.Class is %q, want consistency.Eventual or consistency.Strong", name, c.Class)
	case c.SLA < 0:
		return fmt.Errorf("projections: projection %q: Config.SLA is %s, want a positive duration (or 0 for the default)", name, c.SLA)
	case c.Class == consistency.Strong && c.SLA != 0:
		return fmt.Errorf("projections: projection %q is Strong but Config.SLA is %s (strong read models have no delay: drop the SLA or make it Eventual)", name, c.SLA)
	case c.Partitions < 1 || c.Partitions > feed.MaxPartitions:
		return fmt.Errorf("projections: projection %q: Config.Partitions is %d: use 1..%d (or 0 for the default)", name, c.Partitions, feed.MaxPartitions)
	}
	if err := (feed.Partition{Count: c.Partitions, Key: c.PartitionKey}).Validate(); err != nil {
		return fmt.Errorf("projections: projection %q: Config.PartitionKey: %w", name, err)
	}
	return nil
}

// ValidateName checks a projection name: 1 to MaxNameLength bytes of
// lower-case letters, digits, '_', '.' and '-', starting with a letter or
// digit.
func ValidateName(name string) error {
	switch {
	case name == "":
		return errors.New("projections: empty projection name (name it after the read model, e.g. \"order_summary\")")
	case len(name) > MaxNameLength:
		return fmt.Errorf("projections: projection name %q is %d bytes, the limit is %d", name, len(name), MaxNameLength)
	case !projectionName.MatchString(name):
		return fmt.Errorf("projections: projection name %q: use lower-case letters, digits, '_', '.' and '-', starting with a letter or digit", name)
	}
	return nil
}

// Projection is the definition of a read model: a stable name, typed
// handlers for the event types it handles, and its consistency class.
// Define it once, add handlers with On, then hand it to NewRunner; the same
// definition runs on PostgreSQL and in memory.
//
// The name is stored: it names the read-model rows, the feed checkpoint and
// the consistency.Tracker entry. Renaming a projection starts a new, empty
// read model that replays the whole feed; to rename, add the new name,
// let it catch up, then drop the old one.
//
// A Projection is safe for concurrent use, but add every handler before
// passing it to NewRunner: a runner compiles the handlers it was given.
type Projection struct {
	name string
	cfg  Config

	mu       sync.Mutex
	handlers []handlerDef
}

// handlerDef is one On call, waiting to be resolved against a registry.
type handlerDef struct {
	goType reflect.Type
	// typeName resolves the stored type name of the handled Go type.
	typeName func(reg *events.Registry) (string, error)
	// bind returns the handler decoding with reg.
	bind func(reg *events.Registry) handlerFunc
}

// handlerFunc is a handler bound to a registry: it decodes env and runs the
// user's function.
type handlerFunc func(ctx context.Context, tx *Tx, env events.Envelope) error

// New defines a projection. It panics on an invalid name or Config, which is
// a programmer error; use NewSafely to get the error instead.
func New(name string, cfg *Config) *Projection {
	p, err := NewSafely(name, cfg)
	if err != nil {
		panic(err)
	}
	return p
}

// NewSafely is New returning the error.
func NewSafely(name string, cfg *Config) (*Projection, error) {
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	if err := c.validate(name); err != nil {
		return nil, err
	}
	return &Projection{name: name, cfg: c}, nil
}

// Name returns the projection's stable name.
func (p *Projection) Name() string { return p.name }

// Class returns the projection's consistency class.
func (p *Projection) Class() consistency.Class { return p.cfg.Class }

// CheckpointNames returns the checkpoint name of each of the projection's
// partitions (its name alone when it has one), in partition order, as
// feed.Processor.CheckpointNames does: what lag.Target.Checkpoints takes.
func (p *Projection) CheckpointNames() []string { return checkpointNames(p.name, p.cfg.Partitions) }

// checkpointNames returns the checkpoint names of the partitions of a
// processor named name (feed.PartitionName).
func checkpointNames(name string, partitions int) []string {
	names := make([]string, partitions)
	for i := range names {
		names[i] = feed.PartitionName(name, i, partitions)
	}
	return names
}

// ReadModel returns the projection's declaration for a consistency.Catalog.
func (p *Projection) ReadModel() consistency.ReadModel {
	return consistency.ReadModel{Name: p.name, Class: p.cfg.Class, Description: p.cfg.Description, SLA: p.cfg.SLA}
}

// HandlerFunc handles one event of type T: it reads and writes the read
// model through tx, and returns nil when the event is applied. An error (or
// a panic) discards every write the call made and the event is retried; see
// RunnerConfig.MaxAttempts and OnFailure.
//
// ev is env's payload decoded with the store's events.Registry (upcasters
// included; events stored under an alias of T's name arrive too). Read the
// read model through tx only: a View reads committed rows, not the unit's.
// A handler runs once per event and generation, in global order within its
// partition, never concurrently with another handler of the same partition,
// except for strong projections, whose handlers also run inside each
// append's unit, concurrently with other appends.
type HandlerFunc[T any] func(ctx context.Context, tx *Tx, env events.Envelope, ev T) error

// On makes p handle events of Go type T, which must be registered in the
// store's events.Registry: the stored type name comes from the registry, so
// renaming the Go type is safe while its registered name stays. It panics
// on programmer error (nil fn, T handled twice); use OnSafely to get the
// error instead. An unregistered T is reported by NewRunner.
func On[T any](p *Projection, fn HandlerFunc[T]) {
	if err := OnSafely(p, fn); err != nil {
		panic(err)
	}
}

// OnSafely is On returning the error.
func OnSafely[T any](p *Projection, fn HandlerFunc[T]) error {
	goType := reflect.TypeFor[T]()
	if p == nil {
		return fmt.Errorf("projections: On[%s]: nil projection (define it with projections.New)", goType)
	}
	if fn == nil {
		return fmt.Errorf("projections: projection %q: On[%s]: nil handler", p.name, goType)
	}
	if goType.Kind() == reflect.Interface {
		return fmt.Errorf("projections: projection %q: On[%s]: T is an interface; handle each registered event type with its own On", p.name, goType)
	}
	def := handlerDef{
		goType: goType,
		typeName: func(reg *events.Registry) (string, error) {
			var zero T
			name, _, err := reg.NameOf(zero)
			return name, err
		},
		bind: func(reg *events.Registry) handlerFunc {
			return func(ctx context.Context, tx *Tx, env events.Envelope) error {
				ev, err := events.DecodeAs[T](reg, env)
				if err != nil {
					return err
				}
				return fn(ctx, tx, env, ev)
			}
		},
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.handlers {
		if h.goType == goType {
			return fmt.Errorf("projections: projection %q handles %s twice (one handler per event type)", p.name, goType)
		}
	}
	p.handlers = append(p.handlers, def)
	return nil
}

// compiled is a projection bound to one runner's registry.
type compiled struct {
	name  string
	class consistency.Class
	reg   *events.Registry
	// handlers are keyed by canonical type name (Registry.CanonicalName), so
	// events stored under an alias of a handled type reach its handler.
	handlers map[string]handlerFunc
	// types lists every stored name of every handled type, aliases
	// included: the processor's store-side filter. Runner.Start takes the
	// list again (refreshTypes), so aliases registered between NewRunner
	// and Start are read too.
	types      atomic.Pointer[[]string]
	partitions int
	key        feed.PartitionKey
}

// checkpoints returns the checkpoint names of processor name split like c.
func (c *compiled) checkpoints(name string) []string { return checkpointNames(name, c.partitions) }

func (p *Projection) compile(reg *events.Registry) (*compiled, error) {
	p.mu.Lock()
	defs := append([]handlerDef(nil), p.handlers...)
	p.mu.Unlock()
	if len(defs) == 0 {
		return nil, fmt.Errorf("projections: projection %q has no handlers (add them with projections.On before NewRunner)", p.name)
	}
	c := &compiled{
		name: p.name, class: p.cfg.Class, reg: reg, handlers: make(map[string]handlerFunc, len(defs)),
		partitions: p.cfg.Partitions, key: p.cfg.PartitionKey,
	}
	for _, d := range defs {
		name, err := d.typeName(reg)
		if err != nil {
			return nil, fmt.Errorf("projections: projection %q handles %s: %w", p.name, d.goType, err)
		}
		if _, dup := c.handlers[name]; dup {
			return nil, fmt.Errorf("projections: projection %q has two handlers for stored type %q", p.name, name)
		}
		c.handlers[name] = d.bind(reg)
	}
	c.refreshTypes()
	return c, nil
}

// refreshTypes lists the stored names of the handled types as the
// registry has them now.
func (c *compiled) refreshTypes() {
	var types []string
	for name := range c.handlers {
		types = append(types, c.reg.StoredNames(name)...)
	}
	slices.Sort(types)
	types = slices.Compact(types)
	c.types.Store(&types)
}

// typeList returns the stored names of the handled types (see types).
func (c *compiled) typeList() []string { return *c.types.Load() }

func (c *compiled) strong() bool { return c.class == consistency.Strong }

// handler returns the handler of a stored type name, aliases included, and
// nil for a type the projection does not handle. The aliases are resolved
// at every call, but the store-side filter of the processors (live and
// rebuilds) is taken at Start: an alias registered after Start reaches
// them only from the next Start on (register aliases before Start).
func (c *compiled) handler(storedType string) handlerFunc {
	if h := c.handlers[storedType]; h != nil {
		return h
	}
	if name, ok := c.reg.CanonicalName(storedType); ok {
		return c.handlers[name]
	}
	return nil
}

// handles reports whether c handles any of the stored type names.
func (c *compiled) handles(types []string) bool {
	for _, t := range types {
		if c.handler(t) != nil {
			return true
		}
	}
	return false
}

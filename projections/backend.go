package projections

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/converge-es/converge/events"
)

// backend keeps read models, generations, watermarks and dead letters for
// one store: PostgreSQL tables next to pgstore's, or memory next to a
// memstore. Every method takes the projection name; apply and deadLetter
// run inside the feed unit carried by ctx.
type backend interface {
	// register creates the projections' bookkeeping if missing.
	register(ctx context.Context, ps []*compiled) error
	// sweep drops generations that are neither active nor building (left
	// over by a crash right after a switch).
	sweep(ctx context.Context, name string) error
	// apply applies one feed event inside the unit carried by ctx.
	apply(ctx context.Context, a applyArgs) (applyResult, error)
	// deadLetter records a.env as a dead letter and moves the watermark
	// past it, inside the unit carried by ctx.
	deadLetter(ctx context.Context, a applyArgs, reason string, attempts int) (DeadLetter, bool, error)
	// halt marks a generation halted, outside any unit.
	halt(ctx context.Context, name string, gen int, eventID, reason string) error
	// running reports whether the consumer may apply: the active generation
	// (rebuildGen 0) or the rebuild generation is not halted.
	running(ctx context.Context, name string, rebuildGen int) (bool, error)
	// resume marks every halted generation of name running.
	resume(ctx context.Context, name string) error
	// status reports name without feed checkpoints.
	status(ctx context.Context, name string) (Status, error)
	// generations returns the active and building (0: none) generations.
	generations(ctx context.Context, name string) (active, building int, err error)
	// startRebuild creates the next generation. When the active generation
	// has applied nothing yet it switches to it at once (switched, with
	// the old generation to drop).
	startRebuild(ctx context.Context, name string) (gen int, switched bool, oldGen int, err error)
	// reset moves the active generation's watermark to tok and marks it
	// running, inside the unit carried by ctx.
	reset(ctx context.Context, name string, tok events.Token) error
	// reader reads the active generation of name.
	reader(name string) rowStore
	// deadLetters lists name's dead letters, oldest first.
	deadLetters(ctx context.Context, name string) ([]DeadLetter, error)
	// appliesAtCommit is true when apply's effects become visible only when
	// the feed unit commits (PostgreSQL), false when they are visible at
	// once (memory).
	appliesAtCommit() bool
}

// applyArgs is one delivery to one consumer.
type applyArgs struct {
	proj *compiled
	// rebuildGen is the generation a rebuild consumer writes; 0 for the
	// live consumer, which writes the active generation.
	rebuildGen int
	env        events.Envelope
	// handler is nil for an event the projection does not handle, which a
	// rebuild consumer still delivers to check whether it can switch.
	handler handlerFunc
	// checkSwitch asks a rebuild consumer's apply to switch generations
	// when the rebuild has caught up with the live generation.
	checkSwitch bool
}

// applyResult says what apply did.
type applyResult struct {
	gen     int
	applied bool
	// stale: the rebuild generation is no longer building (switched or
	// abandoned); the rebuild consumer should stop.
	stale bool
	// switched: this delivery made the rebuild generation active; oldGen
	// is the generation to drop once the switch is committed.
	switched bool
	oldGen   int
	updates  []Update
}

// opTimeout bounds the runner's own bookkeeping outside a feed unit
// (marking a halt, dropping an old generation).
const opTimeout = 10 * time.Second

// errGenHalted is returned by apply when the generation is halted: the
// consumer waits for Resume instead of counting a failed attempt.
var errGenHalted = errors.New("projections: generation halted")

// callHandler runs a handler, turning a panic into an error so a panic
// counts as a failed attempt instead of crashing the process.
func callHandler(ctx context.Context, h handlerFunc, tx *Tx, env events.Envelope) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("projections: handler for %q panicked: %v\n%s", env.Type, r, debug.Stack())
		}
	}()
	return h(ctx, tx, env)
}

// handlerError wraps a handler's error with where it happened.
func handlerError(name string, env events.Envelope, err error) error {
	return fmt.Errorf("projections: %q: event %s (%s, stream %q v%d): %w", name, env.ID, env.Type, env.StreamID, env.Version, err)
}

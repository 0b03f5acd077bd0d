package projections

import (
	"errors"
	"fmt"
)

var (
	// ErrUnknownProjection is returned for a projection name the runner was
	// not given.
	ErrUnknownProjection = errors.New("projections: unknown projection (pass it in RunnerConfig.Projections)")
	// ErrNotRegistered is returned when a projection has no row in the
	// database yet: start a Runner with it once (Start registers it).
	ErrNotRegistered = errors.New("projections: projection is not registered (start a Runner with it once; did you run `converge migrate`?)")
	// ErrInvalidKey is wrapped by errors about table names, keys and list
	// options.
	ErrInvalidKey = errors.New("projections: invalid table name or key")
	// ErrReadOnly is returned by writes through a reader's table.
	ErrReadOnly = errors.New("projections: read-only table (write from a projection handler)")
	// ErrAlreadyStarted is returned by a second Start.
	ErrAlreadyStarted = errors.New("projections: runner already started")
	// ErrStopped is returned by Start, and wrapped by the errors of
	// Rebuild, Reset, Resume and RequestReplay, once Stop has been called:
	// they change nothing then. It is also wrapped by Rebuild and
	// AwaitRebuild when Stop ends their wait (and by AwaitRebuild after
	// Stop while a rebuild is in progress). Status, View and DeadLetters go on reading the
	// store after Stop.
	ErrStopped = errors.New("projections: runner stopped (create a new one)")
	// ErrNotRunning is returned by Rebuild before Start (never after
	// Stop, which is ErrStopped). Reset and Resume work before Start:
	// they change the stored checkpoints and halts alone. So does
	// RequestReplay: its request waits for a processor to carry it out.
	ErrNotRunning = errors.New("projections: runner not started (call Start first)")
	// ErrRebuildInProgress is returned by Rebuild while a rebuild of the
	// same projection is running.
	ErrRebuildInProgress = errors.New("projections: a rebuild of this projection is already in progress (wait for it with Runner.AwaitRebuild, or see Status)")
	// ErrStrongCatchingUp refuses an append a strong projection cannot
	// apply yet: its processor has older events it handles to apply first
	// (a Reset's replay, a projection added to a store that held events,
	// events appended without the hook, a halt). Applied now, the append
	// would come before them; left to the processor, its handlers' checks
	// would not run in it. Nothing is stored: append again once the
	// projection has caught up (Runner.Status, a token wait), in a new
	// unit: while a unit that has written is open, the processor cannot
	// pass it. A handler that appends such events is retried by its
	// processor only MaxAttempts times, which a long catch-up (a Reset
	// replaying a large feed) can outlast: rebuild a strong projection
	// (Runner.Rebuild, beside the live rows) rather than reset it.
	ErrStrongCatchingUp = errors.New("projections: strong projection is catching up: its processor has older events to apply before this append can be applied with it (nothing was stored; append again once it has caught up)")
	// ErrResetAhead is returned by Reset (and recorded by a requested
	// reset) for a token after the projection's position: a reset moves a
	// projection back, and forward it would skip the events in between.
	ErrResetAhead = errors.New("projections: a reset moves a projection back, not forward")
	// ErrForeignDeadLetter is wrapped by Runner.RequestReplay's error for
	// a DeadLetter whose Checkpoint is not one of its Projection's: one
	// made by hand or altered, or with no Checkpoint at all.
	ErrForeignDeadLetter = errors.New("projections: the dead letter's checkpoint is not its projection's (pass a DeadLetter as Runner.DeadLetters or OnDeadLetter gave it)")
	// ErrHalted is wrapped by errors about halted projections.
	ErrHalted = errors.New("projections: projection halted")
	// ErrNoTransactions is returned by AppendTx over the in-memory store,
	// which has no transactions: use Append, or a unit of work.
	ErrNoTransactions = errors.New("projections: the in-memory store has no transactions (use Append, or a unit of work)")
)

// HaltedError says why a projection (or its rebuild) stopped applying
// events. It matches ErrHalted.
type HaltedError struct {
	Projection string
	Generation int
	EventID    string
	Reason     string
}

func (e *HaltedError) Error() string {
	return fmt.Sprintf("projections: %q (generation %d) is halted at event %s: %s (fix the cause, then call Resume)",
		e.Projection, e.Generation, e.EventID, e.Reason)
}

// Is makes errors.Is(err, ErrHalted) true.
func (e *HaltedError) Is(target error) bool { return target == ErrHalted }

package saga

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/converge-es/converge/events/feed"
)

// A step's effects take place only when its handler returns nil, the
// engine's own (commands, timers, state) and whatever the handler wrote
// through its unit (Step.Context: events.Update, the unit's rows, its
// transaction). The engine's are held back until then; the handler's
// cannot be, and a unit cannot undo part of itself. So when a handler
// fails after writing through the unit, parking the step in that unit
// would commit the writes with the park, and the retry would write them
// again. Instead the unit is rolled back, the failure is remembered here,
// and when the message comes again (at once: the runtime redelivers a
// failed delivery, the driver re-runs a parked step) the step is parked
// with that failure without running the handler twice for one attempt.
// A step the engine refuses (a PermanentError from commitStep: a command
// nobody handles, state the store would refuse) is the same: its
// handler's writes must not commit with the instance's failure, or
// Engine.Retry would apply them twice; its remembered refusal fails the
// instance when the message comes again.
// Only this process remembers it: if the message comes again elsewhere,
// the handler runs again there, as a retry.

// stepKey names one message of one instance.
type stepKey struct{ saga, id, event string }

// maxFailedSteps bounds failedSteps: a message that never comes back here
// (its partition moved to another process) leaves its entry behind.
// Forgetting one only runs its handler again, as a retry.
const maxFailedSteps = 10_000

type failedSteps struct {
	mu sync.Mutex
	m  map[stepKey]*failedStep
}

// failedStep is one remembered failure; its address tells it from a
// later failure of the same message.
type failedStep struct{ err error }

func (f *failedSteps) put(k stepKey, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil || len(f.m) >= maxFailedSteps {
		f.m = map[stepKey]*failedStep{}
	}
	f.m[k] = &failedStep{err: err}
}

// get returns the remembered failure without forgetting it: the unit that
// uses it may yet roll back (a cut behind it, another saga type's step of
// the same event), and the message then comes again.
func (f *failedSteps) get(k stepKey) (*failedStep, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fs, ok := f.m[k]
	return fs, ok
}

// forget drops fs once the unit that used it committed.
func (f *failedSteps) forget(k stepKey, fs *failedStep) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m[k] == fs {
		delete(f.m, k)
	}
}

// unitWrites is u's count of writes, or 0 for a unit that does not count
// them (the failure is then handled as if nothing was written).
func unitWrites(u feed.Unit) uint64 {
	if wc, ok := u.(feed.WriteCounter); ok {
		return wc.Writes()
	}
	return 0
}

// ErrStepWroteAndFailed is wrapped by the error that rolls back the unit
// of a step whose handler failed after writing through it (see
// Step.Context), or whose step the engine refused after such writes: the
// writes are discarded with the unit, and when the message comes again the
// step is parked for its retry (the refused step fails its instance),
// without running the handler again for this attempt.
var ErrStepWroteAndFailed = errors.New("saga: the step's handler failed after writing through its unit of work; the unit is rolled back so those writes do not land, and the step is retried as any failed step")

// failedAfterWriting remembers the failure and fails the unit: behind the
// head of a feed unit by a cut (the events before it commit by
// themselves, and it comes again at the head at once, counted as no
// failure), else with the failure itself.
func (e *Engine) failedAfterWriting(ctx context.Context, k stepKey, err error) error {
	e.failedSteps.put(k, err)
	if feed.UnitIndex(ctx) > 0 {
		return fmt.Errorf("%w: %w (saga %q, instance %q, message %s: %w)", feed.ErrCut, ErrStepWroteAndFailed, k.saga, k.id, k.event, err)
	}
	return fmt.Errorf("%w (saga %q, instance %q, message %s): %w", ErrStepWroteAndFailed, k.saga, k.id, k.event, err)
}

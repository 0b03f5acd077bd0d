package saga

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors the engine returns or records. Match them with errors.Is.
var (
	// ErrNoUnit is returned by Engine.Handle called without a unit of work
	// in its context: mount the engine on feed.Processor (or call it from a
	// unit begun with feed.CheckpointStore.Begin).
	ErrNoUnit = errors.New("saga: no unit of work in the context (run the engine's handler on feed.Processor, which gives every event a unit)")
	// ErrCorrelation is wrapped when a correlation function returns "",
	// panics, or returns an id longer than MaxInstanceIDLength or holding
	// invalid UTF-8 or a control character (C1 controls and the separators
	// U+2028 and U+2029 included, as in stream ids): the event cannot be
	// routed to an instance.
	ErrCorrelation = errors.New("saga: correlation failed")
	// ErrNotFound is returned by the operations API for an unknown instance.
	ErrNotFound = errors.New("saga: instance not found")
	// ErrNotRetryable is returned by Engine.Retry for an instance that is
	// neither failed by an error nor stuck.
	ErrNotRetryable = errors.New("saga: instance is neither failed by an error nor stuck (nothing to retry)")
	// ErrUnknownSaga is returned by Engine.Retry and Engine.Cancel for an
	// instance of a saga type the engine does not run: only an engine with
	// the definition can run the step again or the OnCancel handler that
	// undoes what the instance did. Ask an engine that runs the type, or
	// record the request with Operator.RequestRetry or RequestCancel, which
	// such an engine carries out.
	ErrUnknownSaga = errors.New("saga: this engine does not run the saga type")
	// ErrEnded is returned by Engine.Cancel for an instance that has
	// already completed, failed by its own decision or been cancelled.
	ErrEnded = errors.New("saga: instance has already ended")
	// ErrRequestPending is returned by Operator.RequestRetry and
	// RequestCancel while a request of the other kind waits for an engine:
	// one would silently replace the other.
	ErrRequestPending = errors.New("saga: another operator request for the instance waits for an engine (see Operator.Pending): let it run, then ask again")
	// ErrStateDecode is wrapped when an instance's stored state no longer
	// decodes into the definition's state type (corrupt, or older than the
	// build with no upcaster or a failing one): the instance is failed (no
	// retry loop) until a build that can read it retries it. State newer
	// than the build is not an error: the step waits for a newer build
	// (see Config.StateVersion).
	ErrStateDecode = errors.New("saga: stored state does not decode (add the Config.Upcast step it needs, or run the build that stored it, then retry the instance)")
	// ErrNoCommandHandler is wrapped when a step sends a command, or
	// registers a compensation, that the engine's CommandCatalog says
	// nobody handles.
	ErrNoCommandHandler = errors.New("saga: command has no handler")
)

// RetryError asks the engine to run the step again after Delay. Return
// RetryAfter(d) from a handler.
type RetryError struct {
	Delay time.Duration
	Err   error
}

func (e *RetryError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("saga: retry the step after %s", e.Delay)
	}
	return fmt.Sprintf("saga: retry the step after %s: %v", e.Delay, e.Err)
}

func (e *RetryError) Unwrap() error { return e.Err }

// RetryAfter makes the engine discard everything the step did and run it
// again after d, without holding up other instances: the instance is
// parked until then and its later messages queue behind the step. After
// Config.MaxAttempts attempts the instance fails with the last error.
func RetryAfter(d time.Duration) error { return &RetryError{Delay: d} }

// PermanentError fails the instance: nothing the step did is kept, the
// instance's status becomes failed with the reason, and later messages
// queue until an operator retries (Engine.Retry) or cancels it.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "saga: permanent failure: " + errString(e.Err) }

func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so that the engine fails the instance instead of
// retrying the step.
func Permanent(err error) error {
	if err == nil {
		err = errors.New("permanent failure")
	}
	return &PermanentError{Err: err}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// notRetryable is ErrNotRetryable for in, saying why: an instance its
// saga failed by decision (Step.Fail) lists as failed, like one an error
// failed, but has no failed step to run again.
func notRetryable(in *instance) error {
	if in.Status == StatusFailed {
		return fmt.Errorf("%w: %s/%s was failed by its saga's own decision (%q), not by an error, so it has no failed step to run again", ErrNotRetryable, in.Saga, in.ID, in.Reason)
	}
	return fmt.Errorf("%w: %s/%s is %s", ErrNotRetryable, in.Saga, in.ID, in.Status)
}

// unknownSaga is ErrUnknownSaga for an operation on saga/id, saying where
// to ask instead.
func unknownSaga(op, saga, id string) error {
	return fmt.Errorf("%w %q, so it cannot %s %s/%s: %s it through an engine that runs %q, or record the request with Operator.Request%s (`converge sagas %s`), which such an engine carries out",
		ErrUnknownSaga, saga, op, saga, id, op, saga, strings.ToUpper(op[:1])+op[1:], op)
}

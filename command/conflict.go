package command

import (
	"errors"
	"fmt"

	"github.com/converge-es/converge/events"
)

// updateAttempts is how many times Run decides on a conflicting aggregate
// in one delivery before it fails the delivery, which is retried with
// backoff.
const updateAttempts = 5

// conflictError is a delivery that gave up on an aggregate other writers
// kept changing. events.Update's own text advises a setting that Handle
// and Run do not expose; this says what a handler's author can do.
type conflictError struct {
	streamID string
	err      error // wraps events.ErrWrongExpectedVersion
}

// persistentConflict wraps err, Update's report of a conflict after
// updateAttempts attempts on streamID.
func persistentConflict(streamID string, err error) error {
	var wev *events.WrongExpectedVersionError
	if errors.As(err, &wev) {
		err = wev // without Update's advice
	}
	return &conflictError{streamID: streamID, err: err}
}

func (e *conflictError) Error() string {
	last := e.err.Error()
	var wev *events.WrongExpectedVersionError
	if errors.As(e.err, &wev) {
		last = fmt.Sprintf("the last append expected %s and found version %d", wev.Expected, wev.Actual)
	}
	return fmt.Sprintf("aggregate stream %q changed between load and append on each of %d decisions (%s): "+
		"the delivery is retried with backoff; an aggregate other writers keep this busy is better split into several streams",
		e.streamID, updateAttempts, last)
}

// Unwrap keeps errors.Is(err, events.ErrWrongExpectedVersion) and
// errors.As to *events.WrongExpectedVersionError working.
func (e *conflictError) Unwrap() error { return e.err }

package events

import (
	"errors"
	"fmt"
)

var (
	// ErrWrongExpectedVersion is matched by every *WrongExpectedVersionError.
	ErrWrongExpectedVersion = errors.New("wrong expected version")
	// ErrInvalidEvent is wrapped by every error about bad input to an append
	// or a read: stream ids, versions, payloads, sizes. Nothing was written.
	ErrInvalidEvent = errors.New("invalid event")
	// ErrDuplicateEvent means an append reuses an event id stored before by
	// a different append: in another stream, at another position, with
	// other content, or alongside ids that are not stored. Appending the
	// very same events again is not an error (see Store.Append), so this
	// is a programming error: give each new event a new id.
	ErrDuplicateEvent = errors.New("event id already appended")
	// ErrUnavailable is wrapped by errors caused by the database being
	// unreachable, restarting or overloaded: connection refused or reset,
	// an unexpected EOF, SQLSTATE classes 08 and 53, 57P01-57P03. The
	// PostgreSQL store wraps it in append and read errors. Unless the error
	// also matches ErrOutcomeUnknown, nothing was written and the call may
	// be retried as it is.
	ErrUnavailable = errors.New("database unavailable")
	// ErrOutcomeUnknown is matched by every *OutcomeUnknownError: the
	// append was sent but its reply was lost, so it may have committed.
	ErrOutcomeUnknown = errors.New("append outcome unknown")
	// ErrUnknownType is matched by every *UnknownTypeError.
	ErrUnknownType = errors.New("unknown event type")
	// ErrDecode is matched by every *DecodeError.
	ErrDecode = errors.New("cannot decode event payload")
	// ErrClosed is returned by a store or subscriber used after Close.
	ErrClosed = errors.New("closed")
)

// WrongExpectedVersionError reports an optimistic concurrency conflict:
// another writer changed the stream since it was read. Reload the stream,
// decide again, and append with the new version (Update does this for you).
type WrongExpectedVersionError struct {
	StreamID string
	Expected ExpectedVersion
	Actual   int64
}

func (e *WrongExpectedVersionError) Error() string {
	return fmt.Sprintf("stream %q: expected %s, but it is at version %d (reload the stream and decide again)",
		e.StreamID, e.Expected, e.Actual)
}

// Is makes errors.Is(err, ErrWrongExpectedVersion) true.
func (e *WrongExpectedVersionError) Is(target error) bool { return target == ErrWrongExpectedVersion }

// OutcomeUnknownError reports an append that reached the database but
// whose commit was not confirmed: the connection failed, or the context
// ended, after the statement was sent. The events may or may not be stored.
//
// Append the same events again (the same ids, stream and expected version;
// EventIDs holds the ids the attempt used, including generated ones) to
// learn which: an append of events that are already stored returns the
// original AppendResult and writes nothing.
type OutcomeUnknownError struct {
	StreamID string
	// EventIDs are the ids the append used, in order. Set them on the
	// events before retrying, so the retry is recognised.
	EventIDs []string
	// Err is what ended the attempt (a connection error, which also
	// matches ErrUnavailable, or the context's error).
	Err error
}

func (e *OutcomeUnknownError) Error() string {
	return fmt.Sprintf("append to %q: outcome unknown, the events may or may not be stored: %v (append the same events again, with the same ids, to learn which: appending them again is idempotent)",
		e.StreamID, e.Err)
}

// Is makes errors.Is(err, ErrOutcomeUnknown) true.
func (e *OutcomeUnknownError) Is(target error) bool { return target == ErrOutcomeUnknown }

// Unwrap returns the error that ended the attempt.
func (e *OutcomeUnknownError) Unwrap() error { return e.Err }

// UnknownTypeError reports a type name (or Go type) the Registry does not know.
type UnknownTypeError struct {
	// Name is the stored type name, when decoding.
	Name string
	// GoType is the Go type, when encoding.
	GoType string
}

func (e *UnknownTypeError) Error() string {
	if e.GoType != "" {
		return fmt.Sprintf("Go type %s is not registered (call events.Register before appending it)", e.GoType)
	}
	return fmt.Sprintf("event type %q is not registered (register it, or read it as raw JSON)", e.Name)
}

// Is makes errors.Is(err, ErrUnknownType) true.
func (e *UnknownTypeError) Is(target error) bool { return target == ErrUnknownType }

// DecodeError reports a stored payload that cannot be turned into its Go type.
type DecodeError struct {
	Type          string
	SchemaVersion int
	Err           error
}

func (e *DecodeError) Error() string {
	var pe *panicError
	if errors.As(e.Err, &pe) {
		return fmt.Sprintf("decode %q (schema v%d): %v", e.Type, e.SchemaVersion, e.Err)
	}
	return fmt.Sprintf("decode %q (schema v%d): %v (is an upcaster missing?)", e.Type, e.SchemaVersion, e.Err)
}

// Unwrap returns the underlying error.
func (e *DecodeError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrDecode) true.
func (e *DecodeError) Is(target error) bool { return target == ErrDecode }

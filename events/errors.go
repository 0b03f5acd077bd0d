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
	// ErrDuplicateEvent means an event id was appended before. When a retried
	// append fails with it, the first attempt committed.
	ErrDuplicateEvent = errors.New("event id already appended")
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
	return fmt.Sprintf("decode %q (schema v%d): %v (is an upcaster missing?)", e.Type, e.SchemaVersion, e.Err)
}

// Unwrap returns the underlying error.
func (e *DecodeError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrDecode) true.
func (e *DecodeError) Is(target error) bool { return target == ErrDecode }

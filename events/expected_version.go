package events

import "fmt"

// ExpectedVersion states what the stream must look like for an append to go
// ahead: a concurrency check that turns lost updates into a typed error.
//
// A stream's version is the number of events in it; a stream that does not
// exist has version 0.
type ExpectedVersion int64

const (
	// AnyVersion appends whatever the stream's version is.
	AnyVersion ExpectedVersion = -1
	// NoStream requires that the stream has no events yet.
	NoStream ExpectedVersion = 0
	// StreamExists requires that the stream has at least one event.
	StreamExists ExpectedVersion = -2
)

// invalidVersion is what Exactly returns for a negative n, so the mistake is
// refused by the append instead of turning into AnyVersion or StreamExists.
const invalidVersion ExpectedVersion = -1 << 62

// Exactly requires the stream to be at version n. Exactly(0) is NoStream.
// A negative n (say, Exactly(v-1) with v == 0) makes the append fail with
// ErrInvalidEvent rather than silently dropping the concurrency check.
func Exactly(n int64) ExpectedVersion {
	if n < 0 {
		return invalidVersion
	}
	return ExpectedVersion(n)
}

// String describes the expectation for error messages.
func (e ExpectedVersion) String() string {
	switch {
	case e == AnyVersion:
		return "any"
	case e == NoStream:
		return "no stream"
	case e == StreamExists:
		return "stream exists"
	case e > 0:
		return fmt.Sprintf("version %d", int64(e))
	}
	return fmt.Sprintf("invalid(%d)", int64(e))
}

// Satisfied reports whether a stream at version actual meets e.
func (e ExpectedVersion) Satisfied(actual int64) bool {
	switch e {
	case AnyVersion:
		return true
	case StreamExists:
		return actual > 0
	}
	return int64(e) == actual
}

func (e ExpectedVersion) validate() error {
	if e < StreamExists {
		return fmt.Errorf("%w: expected version %d is negative (use AnyVersion, NoStream, StreamExists or Exactly(n) with n >= 0)", ErrInvalidEvent, int64(e))
	}
	return nil
}

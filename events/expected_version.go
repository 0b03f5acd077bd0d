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

// invalidBase offsets what Exactly returns for a negative n, so the mistake
// is refused by the append instead of turning into AnyVersion or
// StreamExists, and the error can still name n.
const invalidBase ExpectedVersion = -1 << 62

// Exactly requires the stream to be at version n. Exactly(0) is NoStream.
// A negative n (say, Exactly(v-1) with v == 0) makes the append fail with
// ErrInvalidEvent rather than silently dropping the concurrency check.
func Exactly(n int64) ExpectedVersion {
	if n < 0 {
		return invalidBase + ExpectedVersion(max(n, -1<<62))
	}
	return ExpectedVersion(n)
}

// fromExactly returns the n of Exactly(n) for a negative n.
func (e ExpectedVersion) fromExactly() (int64, bool) {
	if e < invalidBase {
		return int64(e - invalidBase), true
	}
	return 0, false
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
	if n, ok := e.fromExactly(); ok {
		return fmt.Sprintf("invalid Exactly(%d)", n)
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
	if n, ok := e.fromExactly(); ok {
		what := fmt.Sprintf("Exactly(%d)", n)
		if n == -1<<62 {
			what = "Exactly of a hugely negative number" // clamped: n is lost
		}
		return fmt.Errorf("%w: %s: a stream version is never negative (a stream with no events is at 0: use NoStream, or Exactly(n) with n >= 0)", ErrInvalidEvent, what)
	}
	if e < StreamExists {
		return fmt.Errorf("%w: expected version %d is negative (use AnyVersion, NoStream, StreamExists or Exactly(n) with n >= 0)", ErrInvalidEvent, int64(e))
	}
	return nil
}

package consistency

import "errors"

var (
	// ErrNoNames is returned by Wait and Read when they are given no
	// projection names, or an empty one. It is a programmer error: name
	// the read models the query reads, so the wait knows which checkpoints
	// to watch.
	ErrNoNames = errors.New("consistency: no projection names to wait on (pass the read models the query reads)")

	// ErrAlreadyStarted is returned by a second Start.
	ErrAlreadyStarted = errors.New("consistency: tracker already started (Start may be called once)")

	// ErrStopped is returned by Start after Stop: a stopped tracker cannot be
	// restarted, create a new one.
	ErrStopped = errors.New("consistency: tracker is stopped (create a new Tracker)")
)

package consistency

import "errors"

var (
	// ErrNoNames is returned by Wait and Read when they are given no
	// projection names, or an empty one. It is a programmer error: name
	// the read models the query reads, so the wait knows which checkpoints
	// to watch.
	ErrNoNames = errors.New("consistency: no projection names to wait on (pass the read models the query reads)")

	// ErrWaitInUnit is returned by Wait and Read when their context carries
	// a unit of work (events.UnitFromContext): a handler waiting for a read
	// model would keep its unit, and on PostgreSQL its transaction id, open
	// while it waits, and that holds the whole feed back, possibly the very
	// projection it waits for. Wait before the unit begins (in the HTTP
	// handler, not in the feed handler), or read without waiting.
	ErrWaitInUnit = errors.New("consistency: refusing to wait inside a unit of work (it would hold the feed back while it waits; wait before the unit begins, or read without waiting)")

	// ErrAlreadyStarted is returned by a second Start.
	ErrAlreadyStarted = errors.New("consistency: tracker already started (Start may be called once)")

	// ErrStopped is returned by Start after Stop: a stopped tracker cannot be
	// restarted, create a new one.
	ErrStopped = errors.New("consistency: tracker is stopped (create a new Tracker)")
)

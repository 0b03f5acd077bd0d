package converge

import "errors"

var (
	// ErrAlreadyStarted is returned by a second Start.
	ErrAlreadyStarted = errors.New("converge: client already started (Start may be called once)")
	// ErrStopped is returned by Start after Stop: a stopped client cannot
	// be restarted; create a new one with NewClient.
	ErrStopped = errors.New("converge: client is stopped (create a new one with NewClient)")
)

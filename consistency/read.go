package consistency

import (
	"context"

	"github.com/converge-es/converge/events"
)

// Result is a query's answer with the staleness of the read models it came
// from. Status is embedded, so r.Stale, r.Checkpoint and r.Behind read
// directly.
type Result[T any] struct {
	Value T
	Status
}

// Read waits until the named read models reach target (see Tracker.Wait),
// then runs query and returns its answer labelled with the wait's Status.
// The query runs even when the wait ends stale: a stale answer flagged as
// such beats no answer, and the caller decides how to show it.
//
// Read returns an error when Wait does (no names, ctx cancelled) without
// running the query, and the query's own error unchanged.
func Read[T any](ctx context.Context, tr *Tracker, target events.Token, names []string, query func(ctx context.Context) (T, error)) (Result[T], error) {
	st, err := tr.Wait(ctx, target, names...)
	if err != nil {
		return Result[T]{Status: st}, err
	}
	v, err := query(ctx)
	if err != nil {
		return Result[T]{Status: st}, err
	}
	return Result[T]{Value: v, Status: st}, nil
}

package consistency

import (
	"context"
	"errors"
	"time"

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
// The query always gets at least TrackerConfig.QueryTimeout: when the wait
// ended stale because ctx's deadline came (or it would come within that
// budget), the query runs under a context that keeps ctx's values but not
// its deadline, bounded by QueryTimeout instead. So a query that honours
// its context (a database read) still answers after a stale wait, rather
// than failing with context.DeadlineExceeded. That context follows ctx's
// cancellation only until ctx's deadline: past it, ctx is done and cannot
// carry a later cancellation of its parent (a client that went away), so
// the query then runs until it answers or QueryTimeout ends it. For a
// query that a later cancellation must still end, pass a ctx without a
// deadline: the wait then lasts DefaultTimeout, and the query runs under
// ctx itself (as Middleware runs the handler under the request's context).
//
// Read returns an error when Wait does (no names, ctx cancelled) without
// running the query, and the query's own error unchanged.
func Read[T any](ctx context.Context, tr *Tracker, target events.Token, names []string, query func(ctx context.Context) (T, error)) (Result[T], error) {
	st, err := tr.Wait(ctx, target, names...)
	if err != nil {
		return Result[T]{Status: st}, err
	}
	qctx, cancel := queryContext(ctx, tr.cfg.QueryTimeout)
	defer cancel()
	v, err := query(qctx)
	if err != nil {
		return Result[T]{Status: st}, err
	}
	return Result[T]{Value: v, Status: st}, nil
}

// queryContext returns ctx when it leaves the query at least budget, and
// otherwise a context with ctx's values that ends after budget or when ctx
// is cancelled before its deadline (not when the deadline passes: that
// belonged to the wait, which has ended). A cancellation after the
// deadline is not seen: ctx is done by then, and keeps saying
// DeadlineExceeded.
func queryContext(ctx context.Context, budget time.Duration) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok || time.Until(dl) >= budget {
		return ctx, func() {}
	}
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), budget)
	stop := context.AfterFunc(ctx, func() {
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			cancel() // the caller gave up: so does the query
		}
	})
	return qctx, func() { stop(); cancel() }
}

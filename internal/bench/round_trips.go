package bench

import (
	"context"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// roundTrips counts the round trips a pool's connections make to
// PostgreSQL while it is on: each statement sent by itself, and each batch
// (pgx sends a batch's statements together and reads their results in one
// go). A round trip is what a saga step pays in latency and most of what it
// pays the server in fixed cost, so the count per saga shows where a
// change removed work, which the rate alone on a noisy machine cannot.
type roundTrips struct {
	on atomic.Bool
	n  atomic.Int64
}

var (
	_ pgx.QueryTracer = (*roundTrips)(nil)
	_ pgx.BatchTracer = (*roundTrips)(nil)
)

func (r *roundTrips) count() {
	if r.on.Load() {
		r.n.Add(1)
	}
}

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.count()
	return ctx
}

func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.count()
	return ctx
}

func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}

func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// start resets the count and starts counting; stop stops and returns it.
func (r *roundTrips) start() { r.n.Store(0); r.on.Store(true) }

func (r *roundTrips) stop() int64 { r.on.Store(false); return r.n.Load() }

// countingPool opens a pool like pool (same connection settings and size)
// whose round trips r counts.
func countingPool(ctx context.Context, pool *pgxpool.Pool, r *roundTrips) (*pgxpool.Pool, error) {
	cfg := pool.Config()
	cfg.ConnConfig.Tracer = r
	return pgxpool.NewWithConfig(ctx, cfg)
}

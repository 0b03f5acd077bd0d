package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Traced returns a pool like db's (same schema, settings and size) that
// calls seen with every statement its connections send, by itself or in a
// batch, with its arguments: a test counts the statements a piece of work
// costs. seen may be called from several goroutines at once. The pool
// closes when the test ends.
func (db *DB) Traced(tb testing.TB, seen func(sql string, args []any)) *pgxpool.Pool {
	tb.Helper()
	cfg := db.Pool.Config()
	cfg.ConnConfig.Tracer = tracer(seen)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("pgtest: traced pool: %v", err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

type tracer func(sql string, args []any)

var (
	_ pgx.QueryTracer = tracer(nil)
	_ pgx.BatchTracer = tracer(nil)
)

func (f tracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	f(d.SQL, d.Args)
	return ctx
}

func (f tracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (f tracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

func (f tracer) TraceBatchQuery(_ context.Context, _ *pgx.Conn, d pgx.TraceBatchQueryData) {
	f(d.SQL, d.Args)
}

func (f tracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

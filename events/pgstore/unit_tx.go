package pgstore

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// unitTx is a unit's transaction as TxFromContext hands it out. Once the
// unit has ended every call fails with pgx.ErrTxClosed: the unit returned
// its connection to the pool, where it may already serve someone else (or,
// aborted, closed it). A call already past that check when the unit ends
// would run beside the unit's own rollback, so a consumer giving up on a
// handler that has not answered aborts its unit (unit_abort.go) instead.
// Commit and Rollback belong to the unit.
type unitTx struct {
	pgx.Tx
	u *unit
}

// errUnitOwnsTx refuses Commit and Rollback on a unit's transaction.
var errUnitOwnsTx = errors.New("pgstore: the unit commits or rolls back its transaction: return from the handler (an error rolls back)")

func (t *unitTx) ended() error {
	t.u.mu.Lock()
	defer t.u.mu.Unlock()
	if t.u.done {
		return pgx.ErrTxClosed
	}
	return nil
}

func (t *unitTx) Begin(ctx context.Context) (pgx.Tx, error) {
	if err := t.ended(); err != nil {
		return nil, err
	}
	return t.Tx.Begin(ctx)
}

func (t *unitTx) Commit(context.Context) error   { return errUnitOwnsTx }
func (t *unitTx) Rollback(context.Context) error { return errUnitOwnsTx }

func (t *unitTx) CopyFrom(ctx context.Context, table pgx.Identifier, cols []string, src pgx.CopyFromSource) (int64, error) {
	if err := t.ended(); err != nil {
		return 0, err
	}
	return t.Tx.CopyFrom(ctx, table, cols, src)
}

func (t *unitTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if err := t.ended(); err != nil {
		return pgx.FailedBatchResults(b, err)
	}
	return t.Tx.SendBatch(ctx, b)
}

func (t *unitTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if err := t.ended(); err != nil {
		return nil, err
	}
	return t.Tx.Prepare(ctx, name, sql)
}

func (t *unitTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := t.ended(); err != nil {
		return pgconn.CommandTag{}, err
	}
	return t.Tx.Exec(ctx, sql, args...)
}

func (t *unitTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.ended(); err != nil {
		return nil, err
	}
	return t.Tx.Query(ctx, sql, args...)
}

func (t *unitTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := t.ended(); err != nil {
		return errRow{err}
	}
	return t.Tx.QueryRow(ctx, sql, args...)
}

// errRow is a pgx.Row that fails.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

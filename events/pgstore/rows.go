package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// rows is feed.Rows over the rows table: committed rows when u is nil,
// else the unit's transaction, with its writes held until they are needed
// (row_buffer.go). Values are stored as jsonb, so they read
// back normalised (key order, whitespace), equal as JSON to what was put.
type rows struct {
	s *Store
	u *unit
}

// Rows returns the store's rows outside any unit: committed reads, and
// writes that commit by themselves.
func (s *Store) Rows() feed.Rows { return &rows{s: s} }

// errLockOutsideUnit refuses a lock that nothing would hold.
var errLockOutsideUnit = fmt.Errorf("%w: a lock outside a unit protects nothing (read through Unit.Rows)", feed.ErrInvalidRow)

// ended fails with ErrUnitEnded once the unit has ended. Every method of a
// unit's rows calls it first, before the store's closing, its arguments
// and its context, so an ended unit answers ErrUnitEnded whatever it is
// asked (events.Unit), as in memory.
func (r *rows) ended() error {
	if r.u == nil {
		return nil
	}
	return r.u.live()
}

// reader is what a read without a lock runs on: the unit's transaction
// once begun, else the pool. (Writes in a unit are held; locked reads,
// List with held writes and DeleteNamespace go through unit.inTx.)
func (r *rows) reader() (execer, error) {
	if r.u == nil {
		return r.s.pool, nil
	}
	return r.u.reader()
}

func (r *rows) Get(ctx context.Context, ns, table, key string, lock feed.Lock) (feed.Row, bool, error) {
	if err := r.ended(); err != nil {
		return feed.Row{}, false, err
	}
	if r.s.isClosed() {
		return feed.Row{}, false, errClosed
	}
	if err := feed.ValidateRowAddress(ns, table, key); err != nil {
		return feed.Row{}, false, err
	}
	sql := r.s.q.rowGet
	switch lock {
	case feed.LockNone:
	case feed.LockShare:
		sql = r.s.q.rowGetShare
	case feed.LockUpdate:
		sql = r.s.q.rowGetUpdate
	default:
		return feed.Row{}, false, fmt.Errorf("%w: unknown lock %d", feed.ErrInvalidRow, lock)
	}
	if r.u != nil {
		if row, found, ok := r.u.answer(rowAddr{ns, table, key}, lock); ok {
			return row, found, nil
		}
	}
	var (
		value        []byte
		major, minor int64
		err          error
	)
	switch {
	case lock != feed.LockNone && r.u == nil:
		return feed.Row{}, false, errLockOutsideUnit
	case lock != feed.LockNone:
		// A row lock needs the transaction: the lock read travels with its
		// BEGIN (and the held writes when this row is one of them: the
		// read must see the unit's own write), in one round trip.
		missing := false
		_, err = r.u.inTxFlushing(ctx, heldAt(rowAddr{ns, table, key}), func(b *pgx.Batch) { b.Queue(sql, ns, table, key) }, func(br pgx.BatchResults) error {
			err := br.QueryRow().Scan(&value, &major, &minor)
			if errors.Is(err, pgx.ErrNoRows) {
				missing = true // an answer, not a failure of the unit
				return nil
			}
			return err
		})
		if err == nil {
			r.u.readFresh(rowAddr{ns, table, key}, lock, value, major, minor, !missing)
		}
		if err == nil && missing {
			return feed.Row{}, false, nil
		}
	default:
		var db execer
		if db, err = r.reader(); err != nil {
			return feed.Row{}, false, err
		}
		err = db.QueryRow(ctx, sql, ns, table, key).Scan(&value, &major, &minor)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return feed.Row{}, false, nil
	}
	if err != nil {
		return feed.Row{}, false, fmt.Errorf("pgstore: get row %q/%q: %w", ns, table, classify(err))
	}
	return feed.Row{Key: key, Value: json.RawMessage(value), Token: events.MakeToken(uint64(major), uint64(minor))}, true, nil
}

func (r *rows) List(ctx context.Context, ns, table string, q feed.RowQuery) ([]feed.Row, error) {
	if err := r.ended(); err != nil {
		return nil, err
	}
	if r.s.isClosed() {
		return nil, errClosed
	}
	if err := feed.ValidateRowTable(ns, table); err != nil {
		return nil, err
	}
	q, err := feed.ValidateRowQuery(q)
	if err != nil {
		return nil, err
	}
	sql := r.s.q.rowListAsc
	if q.Desc {
		sql = r.s.q.rowListDesc
	}
	args := []any{ns, table, q.Prefix, q.After, q.Limit}
	var out []feed.Row
	if r.u != nil && r.u.hasHeldIn(ns, table, q.Prefix) {
		// The page may hold the unit's own writes: they travel first, with
		// the read, in one round trip. Writes elsewhere stay held, as for
		// a locked Get (a saga start lists its id's rows in one table).
		_, err = r.u.inTx(ctx, func(b *pgx.Batch) { b.Queue(sql, args...) }, func(br pgx.BatchResults) error {
			rs, err := br.Query()
			if err != nil {
				return err
			}
			out, err = pgx.CollectRows(rs, scanRow)
			return err
		})
	} else {
		var db execer
		if db, err = r.reader(); err != nil {
			return nil, err
		}
		var rs pgx.Rows
		if rs, err = db.Query(ctx, sql, args...); err == nil {
			out, err = pgx.CollectRows(rs, scanRow)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("pgstore: list rows %q/%q: %w", ns, table, classify(err))
	}
	if r.u != nil {
		r.u.listed(ns, table)
	}
	return out, nil
}

func scanRow(row pgx.CollectableRow) (feed.Row, error) {
	var (
		out          feed.Row
		value        []byte
		major, minor int64
	)
	err := row.Scan(&out.Key, &value, &major, &minor)
	out.Value = json.RawMessage(value)
	out.Token = events.MakeToken(uint64(major), uint64(minor))
	return out, err
}

func (r *rows) Put(ctx context.Context, ns, table, key string, value json.RawMessage, tok events.Token) error {
	if err := r.ended(); err != nil {
		return err
	}
	if r.s.isClosed() {
		return errClosed
	}
	if err := feed.ValidateRowAddress(ns, table, key); err != nil {
		return err
	}
	if err := feed.ValidateRowValue(value); err != nil {
		return err
	}
	major, minor, err := tokenArgs(tok)
	if err != nil {
		return err
	}
	if r.u != nil {
		r.u.writes.Add(1)
		// A copy: the caller may reuse its buffer before the unit commits.
		return r.u.hold(heldWrite{rowAddr: rowAddr{ns, table, key}, value: append([]byte{}, value...), major: major, minor: minor})
	}
	if _, err := r.s.pool.Exec(ctx, r.s.q.rowPut, ns, table, key, string(value), major, minor); err != nil {
		return fmt.Errorf("pgstore: put row %q/%q: %w", ns, table, classify(err))
	}
	return nil
}

func (r *rows) Delete(ctx context.Context, ns, table, key string) error {
	if err := r.ended(); err != nil {
		return err
	}
	if r.s.isClosed() {
		return errClosed
	}
	if err := feed.ValidateRowAddress(ns, table, key); err != nil {
		return err
	}
	if r.u != nil {
		r.u.writes.Add(1)
		return r.u.hold(heldWrite{rowAddr: rowAddr{ns, table, key}})
	}
	if _, err := r.s.pool.Exec(ctx, r.s.q.rowDelete, ns, table, key); err != nil {
		return fmt.Errorf("pgstore: delete row %q/%q: %w", ns, table, classify(err))
	}
	return nil
}

func (r *rows) DeleteNamespace(ctx context.Context, ns string, limit int) (int, error) {
	if err := r.ended(); err != nil {
		return 0, err
	}
	if r.s.isClosed() {
		return 0, errClosed
	}
	if err := feed.ValidateRowNamespace(ns); err != nil {
		return 0, err
	}
	if err := feed.ValidateDeleteLimit(limit); err != nil {
		return 0, err
	}
	var (
		tag pgconn.CommandTag
		err error
	)
	if r.u == nil {
		tag, err = r.s.pool.Exec(ctx, r.s.q.rowDeleteNS, ns, limit)
	} else {
		// After the held writes (a held put in ns is deleted too), with
		// them and the BEGIN in one round trip.
		r.u.writes.Add(1)
		r.u.forgetFetched()
		_, err = r.u.inTx(ctx, func(b *pgx.Batch) { b.Queue(r.s.q.rowDeleteNS, ns, limit) }, func(br pgx.BatchResults) error {
			var err error
			tag, err = br.Exec()
			return err
		})
	}
	if err != nil {
		return 0, fmt.Errorf("pgstore: delete namespace %q: %w", ns, classify(err))
	}
	return int(tag.RowsAffected()), nil
}

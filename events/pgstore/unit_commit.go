package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// Commit stores each move's position, fenced by its lease generation, and
// commits the unit's writes with them, in one round trip: the fenced
// moves, the held writes and COMMIT go in one batch. A unit without a
// transaction sends the batch as one implicit transaction, so a lost lease
// (the fence fails) rolls the writes back with it; with one move and
// nothing else it is a single UPDATE.
func (u *unit) Commit(ctx context.Context, moves ...feed.Move) error {
	if err := u.live(); err != nil {
		return err
	}
	if err := feed.ValidateMoves(moves); err != nil {
		_ = u.Rollback(ctx)
		return err
	}
	args := make([][7]any, len(moves))
	for i, m := range moves {
		major, minor, err := tokenArgs(m.Position)
		if err != nil {
			_ = u.Rollback(ctx)
			return err
		}
		args[i] = [7]any{m.Lease.Name, m.Lease.Owner, m.Lease.Generation, major, minor, nil, nil}
		if m.From != nil {
			if args[i][5], args[i][6], err = tokenArgs(*m.From); err != nil {
				_ = u.Rollback(ctx)
				return err
			}
		}
	}
	u.mu.Lock()
	if u.done {
		u.mu.Unlock()
		return events.ErrUnitEnded
	}
	u.done = true
	tx, conn, broken := u.tx, u.conn, u.broken
	appended, after, writes := len(u.streams) > 0 || u.announce, u.after, u.held.take()
	u.mu.Unlock()
	var err error
	switch {
	case broken != nil:
		err = fmt.Errorf("pgstore: the unit cannot commit: an earlier statement failed (roll back and run it again): %w", broken)
	case u.s.isClosed():
		err = events.ErrClosed
	case tx == nil && len(writes) == 0 && len(moves) <= 1:
		err = u.commitOne(ctx, moves, args)
	default:
		err = u.commitBatch(ctx, tx, writes, moves, args)
	}
	if tx != nil {
		if err != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
		// After COMMIT (or ROLLBACK) the connection is idle and goes back
		// to the pool; one still in a transaction is closed by it.
		conn.Release()
	}
	// The unit may have held the read horizon back, whatever happened.
	u.s.wake.Notify()
	if err != nil {
		return err
	}
	// Hooks before the moves are announced in this process: a reader woken
	// by a move (the tracker's waiters) finds what the hooks did already
	// done.
	for _, fn := range after {
		fn()
	}
	if appended {
		u.s.notifier.kick("e", u.s.eventsPayload())
	}
	for _, m := range moves {
		u.s.fireCheckpoint(m.Lease.Name, m.Position)
		u.s.notifier.kick("c:"+m.Lease.Name, u.s.checkpointPayload(m.Lease.Name, m.Position))
	}
	return nil
}

// commitOne moves one checkpoint (or none) with a plain UPDATE.
func (u *unit) commitOne(ctx context.Context, moves []feed.Move, args [][7]any) error {
	if len(moves) == 0 {
		return nil
	}
	tag, err := u.s.pool.Exec(ctx, u.s.q.commit, args[0][:]...)
	if err == nil && tag.RowsAffected() == 0 {
		return moveRefused(moves[0])
	}
	if err != nil {
		return fmt.Errorf("pgstore: commit checkpoint %q: %w", moves[0].Lease.Name, err)
	}
	return nil
}

// commitBatch sends the fenced moves, the writes and, inside a
// transaction, COMMIT in one batch. A statement that fails makes the server
// skip the rest of the batch, COMMIT included.
func (u *unit) commitBatch(ctx context.Context, tx pgx.Tx, writes []heldWrite, moves []feed.Move, args [][7]any) error {
	b := &pgx.Batch{}
	for i := range moves {
		b.Queue(u.s.q.commitFenced, args[i][:]...)
	}
	nw := u.s.queueWrites(b, writes)
	var br pgx.BatchResults
	if tx != nil {
		b.Queue("COMMIT")
		br = tx.SendBatch(ctx, b)
	} else {
		br = u.s.pool.SendBatch(ctx, b)
	}
	err := func() error {
		for i := range moves {
			if _, err := br.Exec(); err != nil {
				var pgErr *pgconn.PgError
				if errors.As(err, &pgErr) && pgErr.Code == "22012" {
					return moveRefused(moves[i])
				}
				return fmt.Errorf("pgstore: commit checkpoint %q: %w", moves[i].Lease.Name, classify(err))
			}
		}
		for range nw {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("pgstore: write %d rows: %w", len(writes), classify(err))
			}
		}
		if tx == nil {
			return nil
		}
		tag, err := br.Exec()
		if err != nil {
			return fmt.Errorf("pgstore: commit unit: %w", classify(err))
		}
		if tag.String() != "COMMIT" {
			// COMMIT of a transaction an earlier failure aborted answers
			// ROLLBACK, without an error.
			return fmt.Errorf("pgstore: commit unit: the transaction was rolled back (%s): an earlier statement in it failed", tag.String())
		}
		return nil
	}()
	if cerr := br.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("pgstore: commit unit: %w", classify(cerr))
	}
	return err
}

// Rollback discards the unit's writes. Safe after Commit, and twice.
func (u *unit) Rollback(ctx context.Context) error {
	u.mu.Lock()
	tx, conn := u.tx, u.conn
	wasDone := u.done
	u.done = true
	u.held = nil
	u.mu.Unlock()
	if wasDone || tx == nil {
		return nil
	}
	err := tx.Rollback(context.WithoutCancel(ctx))
	conn.Release()
	u.s.wake.Notify()
	if err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return fmt.Errorf("pgstore: roll back unit: %w", err)
	}
	return nil
}

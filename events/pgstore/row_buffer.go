package pgstore

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/converge-es/converge/events"
)

// A unit's row writes (Put and Delete without a lock) are held in the unit and
// sent when something needs them in the database: at Commit, in the batch that
// moves the checkpoints, and before a statement that reads the rows table
// inside the transaction (a List of a range with held writes, a locked Get of
// a held row, DeleteNamespace, TxFromContext). A consumer applying a batch of
// events would otherwise pay a round trip per write; held, the writes of a
// hundred events travel as two statements in the commit's round trip. A Get
// without a lock answers from the held writes first, so the unit still reads
// its own writes.

// rowAddr is a row's address.
type rowAddr struct{ ns, table, key string }

// heldWrite is a held Put (value set) or Delete (value nil).
type heldWrite struct {
	rowAddr
	value        []byte
	major, minor int64
}

// rowBuffer holds a unit's writes, one per row (the last write wins).
// Their order does not matter: queueWrites sorts them.
type rowBuffer map[rowAddr]heldWrite

// take empties the buffer and returns its writes.
func (b *rowBuffer) take() []heldWrite {
	w := make([]heldWrite, 0, len(*b))
	for _, hw := range *b {
		w = append(w, hw)
	}
	*b = nil
	return w
}

// restore puts back writes taken but never sent. A row written since they
// were taken keeps its newer write.
func (b *rowBuffer) restore(writes []heldWrite) {
	if len(writes) == 0 {
		return
	}
	if *b == nil {
		*b = make(rowBuffer, len(writes))
	}
	for _, w := range writes {
		if _, newer := (*b)[w.rowAddr]; !newer {
			(*b)[w.rowAddr] = w
		}
	}
}

// hold records a write for the unit to send later.
func (u *unit) hold(w heldWrite) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return events.ErrUnitEnded
	}
	if u.held == nil {
		u.held = rowBuffer{}
	}
	u.held[w.rowAddr] = w
	// The held write answers Gets now, and the table once it is sent.
	delete(u.fetched, w.rowAddr)
	return nil
}

// hasHeldIn reports whether the unit holds writes not yet sent in table
// ns/table with keys starting with prefix: what a List of them must see.
func (u *unit) hasHeldIn(ns, table, prefix string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for a := range u.held {
		if a.ns == ns && a.table == table && strings.HasPrefix(a.key, prefix) {
			return true
		}
	}
	return false
}

// inTx runs what queue adds to a batch in the unit's transaction, in one
// round trip together with BEGIN (when the unit has no transaction yet)
// and the held writes, which go first so the statements see them. read
// consumes the results of queue's statements, in order. It returns the
// transaction.
func (u *unit) inTx(ctx context.Context, queue func(*pgx.Batch), read func(pgx.BatchResults) error) (pgx.Tx, error) {
	return u.inTxFlushing(ctx, nil, queue, read)
}

// heldAt returns a flush condition for inTxFlushing: whether any of addrs
// is held.
func heldAt(addrs ...rowAddr) func(rowBuffer) bool {
	return func(held rowBuffer) bool {
		for _, a := range addrs {
			if _, ok := held[a]; ok {
				return true
			}
		}
		return false
	}
}

// inTxFlushing is inTx that sends the held writes only when flush says so
// (always when flush is nil). A locked read of one row needs the held
// writes only when that row is among them: sending the others then would
// cost a statement per read, and a unit that locks each row it is about to
// change (a saga step locking its instance) would send an upsert before
// every lock instead of one at commit.
func (u *unit) inTxFlushing(ctx context.Context, flush func(rowBuffer) bool, queue func(*pgx.Batch), read func(pgx.BatchResults) error) (pgx.Tx, error) {
	u.mu.Lock()
	if u.done {
		u.mu.Unlock()
		return nil, events.ErrUnitEnded
	}
	tx := u.tx
	began := tx == nil
	if began && u.s.isClosed() {
		u.mu.Unlock()
		return nil, events.ErrClosed
	}
	var writes []heldWrite
	if flush == nil || flush(u.held) {
		writes = u.held.take()
	}
	b := &pgx.Batch{}
	if began {
		b.BeginTx(pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	}
	nw := u.s.queueWrites(b, writes)
	if queue != nil {
		queue(b)
	}
	if b.Len() == 0 {
		u.mu.Unlock()
		return tx, nil
	}
	var br pgx.BatchResults
	if began {
		conn, err := u.s.pool.Acquire(ctx)
		if err != nil {
			// Nothing reached the database: the held writes go back and
			// the unit stays usable, as the in-memory store's does after
			// a done context. Marking it broken here let later calls
			// succeed only for Commit to refuse them all.
			u.held.restore(writes)
			u.mu.Unlock()
			return nil, fmt.Errorf("pgstore: begin unit transaction: %w", classify(err))
		}
		br = conn.SendBatch(ctx, b)
		tx = br.Tx()
		u.conn, u.tx = conn, tx
	} else {
		br = tx.SendBatch(ctx, b)
	}
	u.mu.Unlock()
	err := func() error {
		if began {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("pgstore: begin unit transaction: %w", classify(err))
			}
		}
		for range nw {
			if _, err := br.Exec(); err != nil {
				return fmt.Errorf("pgstore: write %d rows: %w", len(writes), classify(err))
			}
		}
		if read != nil {
			return read(br)
		}
		return nil
	}()
	if cerr := br.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("pgstore: unit statement: %w", classify(cerr))
	}
	if err != nil {
		u.mu.Lock()
		if u.broken == nil {
			u.broken = err
		}
		u.mu.Unlock()
		return nil, err
	}
	return tx, nil
}

// dropHeld forgets the held writes and the prefetched rows (the savepoint
// they were made under rolled back, or the unit did).
func (u *unit) dropHeld() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.held = nil
	// Locks taken since the savepoint went with it.
	u.fetched, u.locked = nil, nil
}

// queueWrites queues the statements that store writes: one upsert of the
// puts and one delete, each over arrays. Rows go in address order, so
// units writing overlapping rows lock them in the same order and cannot
// deadlock on each other's row writes.
func (s *Store) queueWrites(b *pgx.Batch, writes []heldWrite) (queued int) {
	slices.SortFunc(writes, func(a, b heldWrite) int {
		if c := strings.Compare(a.ns, b.ns); c != 0 {
			return c
		}
		if c := strings.Compare(a.table, b.table); c != 0 {
			return c
		}
		return strings.Compare(a.key, b.key)
	})
	var (
		pns, ptbl, pkey, pval []string
		pmaj, pmin            []int64
		dns, dtbl, dkey       []string
	)
	for _, w := range writes {
		if w.value == nil {
			dns, dtbl, dkey = append(dns, w.ns), append(dtbl, w.table), append(dkey, w.key)
			continue
		}
		pns, ptbl, pkey = append(pns, w.ns), append(ptbl, w.table), append(pkey, w.key)
		pval, pmaj, pmin = append(pval, string(w.value)), append(pmaj, w.major), append(pmin, w.minor)
	}
	if len(pns) > 0 {
		b.Queue(s.q.rowPutMany, pns, ptbl, pkey, pval, pmaj, pmin)
		queued++
	}
	if len(dns) > 0 {
		b.Queue(s.q.rowDeleteMany, dns, dtbl, dkey)
		queued++
	}
	return queued
}

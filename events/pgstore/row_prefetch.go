package pgstore

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// fetchedRow is a row as Rows.Prefetch read it (present false: absent).
// The lock it answers under is the unit's on the row (unit.locked).
type fetchedRow struct {
	value        []byte
	major, minor int64
	present      bool
}

// answer answers a Get of a inside the unit without a statement when it
// can (ok): from the unit's held write of it (when the unit already holds
// the lock asked for, or none is asked for), or from a Prefetch that read
// it with at least lock. Once the transaction has been handed out
// (TxFromContext), SQL the caller runs on it may have changed any row, so
// prefetched rows no longer answer. An ended unit answers nothing.
func (u *unit) answer(a rowAddr, lock feed.Lock) (row feed.Row, found, ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return feed.Row{}, false, false // the statement path says so
	}
	if w, held := u.held[a]; held {
		// SQL on a handed-out transaction may have rolled a savepoint
		// back, and the locks taken under it with it.
		if lock != feed.LockNone && (u.locked[a] < lock || u.handed != nil) {
			// The lock is not taken yet: the held write is sent and the
			// row read back locked (Rows.Get).
			return feed.Row{}, false, false
		}
		if w.value == nil {
			return feed.Row{}, false, true // a held delete is an absence
		}
		return rowOf(a.key, w.value, w.major, w.minor), true, true
	}
	f, fetched := u.fetched[a]
	if !fetched || u.locked[a] < lock || u.handed != nil {
		return feed.Row{}, false, false
	}
	if !f.present {
		return feed.Row{}, false, true
	}
	return rowOf(a.key, f.value, f.major, f.minor), true, true
}

// rowOf makes a row of a value the unit keeps: a copy, since the caller
// may change what it got.
func rowOf(key string, value []byte, major, minor int64) feed.Row {
	return feed.Row{Key: key, Value: append(json.RawMessage{}, value...), Token: events.MakeToken(uint64(major), uint64(minor))}
}

// forgetFetched drops the prefetched rows: a statement is about to change
// rows behind them.
func (u *unit) forgetFetched() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.fetched = nil
}

// readFresh records a locked Get's read of a from the table: the lock,
// and the row as read in place of an older prefetched copy, so a later
// Get never answers something older than what the unit has seen.
func (u *unit) readFresh(a rowAddr, lock feed.Lock, value []byte, major, minor int64, present bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.tookLocks(lock, a)
	if _, ok := u.fetched[a]; ok {
		u.fetched[a] = fetchedRow{value: append([]byte(nil), value...), major: major, minor: minor, present: present}
	}
}

// listed drops the prefetched rows of ns/table read without a lock: a
// List read the table since, and may have seen them newer. Locked ones
// cannot have changed.
func (u *unit) listed(ns, table string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for a := range u.fetched {
		if u.locked[a] == feed.LockNone && a.ns == ns && a.table == table {
			delete(u.fetched, a)
		}
	}
}

// Prefetch reads the rows at addrs in one statement (with the BEGIN and,
// when one of them is held and a lock is asked for, the held writes, in
// one round trip) and keeps them for the unit's Gets.
func (r *rows) Prefetch(ctx context.Context, lock feed.Lock, addrs ...feed.RowAddress) error {
	if err := r.ended(); err != nil {
		return err
	}
	if err := feed.ValidatePrefetch(lock, addrs); err != nil {
		return err
	}
	if r.u == nil {
		if lock != feed.LockNone {
			return errLockOutsideUnit
		}
		return nil
	}
	if len(addrs) == 0 {
		return nil
	}
	as := make([]rowAddr, len(addrs))
	nss, tbls, keys := make([]string, len(addrs)), make([]string, len(addrs)), make([]string, len(addrs))
	for i, a := range addrs {
		as[i] = rowAddr{a.Namespace, a.Table, a.Key}
		nss[i], tbls[i], keys[i] = a.Namespace, a.Table, a.Key
	}
	found := make(map[rowAddr]fetchedRow, len(addrs))
	scan := func(rs pgx.Rows) error {
		var (
			a     rowAddr
			f     = fetchedRow{present: true}
			value []byte
		)
		_, err := pgx.ForEachRow(rs, []any{&a.ns, &a.table, &a.key, &value, &f.major, &f.minor}, func() error {
			f.value = append([]byte(nil), value...)
			found[a] = f
			return nil
		})
		return err
	}
	var err error
	if lock == feed.LockNone {
		// As a Get without a lock: on the unit's transaction once begun,
		// else on the pool, so it begins nothing (a gate reads this way
		// at the head of a unit). Held rows answer from the held writes.
		var db execer
		if db, err = r.u.reader(); err == nil {
			var rs pgx.Rows
			if rs, err = db.Query(ctx, r.s.q.rowPrefetch[lock], nss, tbls, keys); err == nil {
				err = scan(rs)
			}
		}
	} else {
		_, err = r.u.inTxFlushing(ctx, heldAt(as...), func(b *pgx.Batch) { b.Queue(r.s.q.rowPrefetch[lock], nss, tbls, keys) }, func(br pgx.BatchResults) error {
			rs, err := br.Query()
			if err != nil {
				return err
			}
			return scan(rs)
		})
	}
	if err != nil {
		return fmt.Errorf("pgstore: prefetch %d rows: %w", len(addrs), classify(err))
	}
	r.u.keepFetched(as, found, lock)
	return nil
}

// keepFetched records what a Prefetch read. A row the unit holds a write
// of is left out: the write answers for it, and once sent the table does.
func (u *unit) keepFetched(as []rowAddr, found map[rowAddr]fetchedRow, lock feed.Lock) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return
	}
	if u.fetched == nil {
		u.fetched = make(map[rowAddr]fetchedRow, len(as))
	}
	for _, a := range as {
		if _, held := u.held[a]; held {
			continue
		}
		u.fetched[a] = found[a] // absent: the zero fetchedRow
	}
	u.tookLocks(lock, as...)
}

// tookLocks records that the unit's transaction holds lock on the rows at
// as: a later Get of one of them with at most that lock answers from the
// unit's held write of it, or from what a Prefetch read.
func (u *unit) tookLocks(lock feed.Lock, as ...rowAddr) {
	if lock == feed.LockNone {
		return
	}
	if u.locked == nil {
		u.locked = make(map[rowAddr]feed.Lock, len(as))
	}
	for _, a := range as {
		u.locked[a] = max(u.locked[a], lock)
	}
}

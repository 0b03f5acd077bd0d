package memstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// rowAddr addresses one row.
type rowAddr struct{ ns, table, key string }

// rowData is a stored row's content.
type rowData struct {
	value json.RawMessage
	tok   events.Token
}

// rowStore holds the committed rows, guarded by Store.mu. vers counts the
// changes of every address ever written or update-locked, so a unit's
// commit can tell whether a row it read with a lock changed since,
// including a row deleted and written again. shares counts the commits of
// units that held an address with LockShare: a unit holding it with
// LockUpdate must not commit after one of them that it overlapped, since
// on PostgreSQL its FOR UPDATE would have waited for that unit and then
// seen what it committed.
type rowStore struct {
	data   map[string]map[string]map[string]rowData // ns -> table -> key
	vers   map[rowAddr]uint64
	shares map[rowAddr]uint64
	seq    uint64
}

func newRowStore() rowStore {
	return rowStore{
		data:   map[string]map[string]map[string]rowData{},
		vers:   map[rowAddr]uint64{},
		shares: map[rowAddr]uint64{},
	}
}

func (r *rowStore) shareVersion(a rowAddr) uint64 { return r.shares[a] }

// bumpShare records the commit of a unit that held a with LockShare.
func (r *rowStore) bumpShare(a rowAddr) {
	r.seq++
	r.shares[a] = r.seq
}

func (r *rowStore) get(a rowAddr) (rowData, bool) {
	d, ok := r.data[a.ns][a.table][a.key]
	return d, ok
}

func (r *rowStore) version(a rowAddr) uint64 { return r.vers[a] }

func (r *rowStore) bump(a rowAddr) {
	r.seq++
	r.vers[a] = r.seq
}

// write stores w at a, or deletes a when w is nil.
func (r *rowStore) write(a rowAddr, w *rowData) {
	r.bump(a)
	if w == nil {
		t := r.data[a.ns][a.table]
		delete(t, a.key)
		if len(t) == 0 {
			delete(r.data[a.ns], a.table)
			if len(r.data[a.ns]) == 0 {
				delete(r.data, a.ns)
			}
		}
		return
	}
	ns := r.data[a.ns]
	if ns == nil {
		ns = map[string]map[string]rowData{}
		r.data[a.ns] = ns
	}
	t := ns[a.table]
	if t == nil {
		t = map[string]rowData{}
		ns[a.table] = t
	}
	t[a.key] = *w
}

// rows is feed.Rows over the store: committed rows when u is nil, else
// the unit's view.
type rows struct {
	s *Store
	u *unit
}

// errLockOutsideUnit refuses a lock that nothing would hold.
var errLockOutsideUnit = fmt.Errorf("%w: a lock outside a unit protects nothing (read through Unit.Rows)", feed.ErrInvalidRow)

// ended fails with ErrUnitEnded once the unit has ended. Every method of a
// unit's rows calls it first, before its arguments and its context, so an
// ended unit answers ErrUnitEnded whatever it is asked (events.Unit), as
// on PostgreSQL. It reads the unit's ended channel, closed with done set
// under s.mu, so the check costs no second turn of the store's lock on
// every row call. A failed unit still judges the input first (see lock).
func (r *rows) ended() error {
	if r.u == nil {
		return nil
	}
	select {
	case <-r.u.ended:
		return events.ErrUnitEnded
	default:
		return nil
	}
}

// lock takes s.mu for a call, failing when the store is closed or the unit
// ended. write says whether the call changes committed rows.
func (r *rows) lock(ctx context.Context, write bool) (held, error) {
	if err := r.s.check(ctx); err != nil {
		return held{}, err
	}
	h := held{mu: &r.s.mu, exclusive: write || r.u != nil}
	if h.exclusive {
		h.mu.Lock()
	} else {
		h.mu.RLock()
	}
	if r.u != nil && r.u.done {
		h.unlock()
		return held{}, events.ErrUnitEnded
	}
	if r.u != nil && r.u.failed != nil {
		h.unlock()
		return held{}, r.u.failed // see unit.live
	}
	return h, nil
}

// held is the store's lock as lock took it. A value, not a func: the
// method value of the mutex's unlock was a heap allocation per row call.
type held struct {
	mu        *sync.RWMutex
	exclusive bool
}

func (h held) unlock() {
	if h.exclusive {
		h.mu.Unlock()
	} else {
		h.mu.RUnlock()
	}
}

func (r *rows) Get(ctx context.Context, ns, table, key string, lock feed.Lock) (feed.Row, bool, error) {
	if err := r.ended(); err != nil {
		return feed.Row{}, false, err
	}
	if err := feed.ValidateRowAddress(ns, table, key); err != nil {
		return feed.Row{}, false, err
	}
	if lock < feed.LockNone || lock > feed.LockUpdate {
		return feed.Row{}, false, fmt.Errorf("%w: unknown lock %d", feed.ErrInvalidRow, lock)
	}
	if lock != feed.LockNone && r.u == nil {
		return feed.Row{}, false, errLockOutsideUnit
	}
	h, err := r.lock(ctx, false)
	if err != nil {
		return feed.Row{}, false, err
	}
	defer h.unlock()
	a := rowAddr{ns, table, key}
	if lock != feed.LockNone {
		r.holdRead(a, lock)
	}
	if r.u != nil {
		if w, ok := r.u.rowWrites[a]; ok {
			if w == nil {
				return feed.Row{}, false, nil
			}
			return toRow(key, *w), true, nil
		}
	}
	d, ok := r.s.rows.get(a)
	if !ok {
		return feed.Row{}, false, nil
	}
	return toRow(key, d), true, nil
}

// holdRead records a locked read of a by the unit, for its commit to check.
// Callers hold s.mu.
func (r *rows) holdRead(a rowAddr, lock feed.Lock) {
	if prev, seen := r.u.rowReads[a]; !seen {
		r.u.rowReads[a] = rowRead{ver: r.s.rows.version(a), share: r.s.rows.shareVersion(a), update: lock == feed.LockUpdate}
	} else if lock == feed.LockUpdate {
		prev.update = true
		r.u.rowReads[a] = prev
	}
}

// Prefetch takes the locks the Gets of addrs would take. A Get here costs
// no round trip, so the rows themselves are read again when asked for:
// under a lock that reads what the Prefetch would have, since a change in
// between fails the unit at commit.
func (r *rows) Prefetch(ctx context.Context, lock feed.Lock, addrs ...feed.RowAddress) error {
	if err := r.ended(); err != nil {
		return err
	}
	if err := feed.ValidatePrefetch(lock, addrs); err != nil {
		return err
	}
	if lock != feed.LockNone && r.u == nil {
		return errLockOutsideUnit
	}
	h, err := r.lock(ctx, false)
	if err != nil {
		return err
	}
	defer h.unlock()
	if lock == feed.LockNone {
		return nil
	}
	for _, a := range addrs {
		r.holdRead(rowAddr{a.Namespace, a.Table, a.Key}, lock)
	}
	return nil
}

func toRow(key string, d rowData) feed.Row {
	return feed.Row{Key: key, Value: cloneBytes(d.value), Token: d.tok}
}

func (r *rows) List(ctx context.Context, ns, table string, q feed.RowQuery) ([]feed.Row, error) {
	if err := r.ended(); err != nil {
		return nil, err
	}
	if err := feed.ValidateRowTable(ns, table); err != nil {
		return nil, err
	}
	q, err := feed.ValidateRowQuery(q)
	if err != nil {
		return nil, err
	}
	h, err := r.lock(ctx, false)
	if err != nil {
		return nil, err
	}
	defer h.unlock()
	merged := map[string]rowData{}
	for k, d := range r.s.rows.data[ns][table] {
		if strings.HasPrefix(k, q.Prefix) {
			merged[k] = d
		}
	}
	if r.u != nil {
		for a, w := range r.u.rowWrites {
			if a.ns != ns || a.table != table || !strings.HasPrefix(a.key, q.Prefix) {
				continue
			}
			if w == nil {
				delete(merged, a.key)
			} else {
				merged[a.key] = *w
			}
		}
	}
	keys := make([]string, 0, len(merged))
	for k := range merged {
		// Byte-wise comparison, as COLLATE "C" on PostgreSQL.
		if q.After != "" && ((!q.Desc && k <= q.After) || (q.Desc && k >= q.After)) {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if q.Desc {
		slices.Reverse(keys)
	}
	keys = keys[:min(len(keys), q.Limit)]
	out := make([]feed.Row, len(keys))
	for i, k := range keys {
		out[i] = toRow(k, merged[k])
	}
	return out, nil
}

func (r *rows) Put(ctx context.Context, ns, table, key string, value json.RawMessage, tok events.Token) error {
	if err := r.ended(); err != nil {
		return err
	}
	if err := feed.ValidateRowAddress(ns, table, key); err != nil {
		return err
	}
	if err := feed.ValidateRowValue(value); err != nil {
		return err
	}
	if err := feed.ValidateToken(tok); err != nil {
		return err
	}
	return r.write(ctx, rowAddr{ns, table, key}, &rowData{value: cloneBytes(value), tok: tok})
}

func (r *rows) Delete(ctx context.Context, ns, table, key string) error {
	if err := r.ended(); err != nil {
		return err
	}
	if err := feed.ValidateRowAddress(ns, table, key); err != nil {
		return err
	}
	return r.write(ctx, rowAddr{ns, table, key}, nil)
}

func (r *rows) write(ctx context.Context, a rowAddr, w *rowData) error {
	h, err := r.lock(ctx, true)
	if err != nil {
		return err
	}
	defer h.unlock()
	if r.u != nil {
		r.u.writes.Add(1)
		r.u.rowWrites[a] = w
		return nil
	}
	r.s.rows.write(a, w)
	return nil
}

func (r *rows) DeleteNamespace(ctx context.Context, ns string, limit int) (int, error) {
	if err := r.ended(); err != nil {
		return 0, err
	}
	if err := feed.ValidateRowNamespace(ns); err != nil {
		return 0, err
	}
	if err := feed.ValidateDeleteLimit(limit); err != nil {
		return 0, err
	}
	h, err := r.lock(ctx, true)
	if err != nil {
		return 0, err
	}
	defer h.unlock()
	if r.u != nil {
		r.u.writes.Add(1)
	}
	var live []rowAddr
	for table, keys := range r.s.rows.data[ns] {
		for k := range keys {
			a := rowAddr{ns, table, k}
			if r.u != nil {
				if w, ok := r.u.rowWrites[a]; ok && w == nil {
					continue
				}
			}
			live = append(live, a)
		}
	}
	if r.u != nil {
		for a, w := range r.u.rowWrites {
			if _, committed := r.s.rows.get(a); a.ns == ns && w != nil && !committed {
				live = append(live, a)
			}
		}
	}
	// Deleting in address order makes batches predictable.
	slices.SortFunc(live, func(x, y rowAddr) int {
		if c := strings.Compare(x.table, y.table); c != 0 {
			return c
		}
		return strings.Compare(x.key, y.key)
	})
	live = live[:min(len(live), limit)]
	for _, a := range live {
		if r.u != nil {
			r.u.rowWrites[a] = nil
		} else {
			r.s.rows.write(a, nil)
		}
	}
	return len(live), nil
}

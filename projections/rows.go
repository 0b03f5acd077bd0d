package projections

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// unitRows is one generation's tables inside a unit: reads see the unit's
// own writes, writes carry the token of the event being applied and commit
// with the unit.
type unitRows struct {
	rows feed.Rows
	ns   string
	tok  events.Token
	// cache, when set, remembers the rows this unit read and wrote, so a
	// key read again in the same unit costs no round trip. Only a rebuild
	// sets it: its processor is the one writer of its generation, so
	// nothing else can change a row under the unit.
	cache map[rowKey]cachedRow
	// known, when set, is what the rebuild knows from earlier units; a
	// hit is copied into cache (known is only read until the unit commits).
	known *knownRows
}

type rowKey struct{ table, key string }

type cachedRow struct {
	row   feed.Row
	found bool
}

func (r *unitRows) get(ctx context.Context, table, key string) (feed.Row, bool, error) {
	if c, ok := r.cache[rowKey{table, key}]; ok {
		return c.row, c.found, nil
	}
	if r.known != nil {
		if c, ok := r.known.lookup(rowKey{table, key}); ok {
			r.cache[rowKey{table, key}] = c
			return c.row, c.found, nil
		}
	}
	row, ok, err := r.rows.Get(ctx, r.ns, table, key, feed.LockNone)
	if err != nil {
		return feed.Row{}, false, fmt.Errorf("projections: get %q/%q: %w", table, key, err)
	}
	if r.cache != nil {
		r.cache[rowKey{table, key}] = cachedRow{row: row, found: ok}
	}
	return row, ok, nil
}

func (r *unitRows) list(ctx context.Context, table string, q feed.RowQuery) ([]feed.Row, error) {
	rows, err := r.rows.List(ctx, r.ns, table, q)
	if err != nil {
		return nil, fmt.Errorf("projections: list %q: %w", table, err)
	}
	return rows, nil
}

func (r *unitRows) put(ctx context.Context, table, key string, value json.RawMessage) error {
	if err := r.rows.Put(ctx, r.ns, table, key, value, r.tok); err != nil {
		delete(r.cache, rowKey{table, key})
		return fmt.Errorf("projections: put %q/%q: %w", table, key, err)
	}
	if r.cache != nil {
		r.cache[rowKey{table, key}] = cachedRow{row: feed.Row{Key: key, Value: value, Token: r.tok}, found: true}
	}
	return nil
}

func (r *unitRows) del(ctx context.Context, table, key string) error {
	if err := r.rows.Delete(ctx, r.ns, table, key); err != nil {
		delete(r.cache, rowKey{table, key})
		return fmt.Errorf("projections: delete %q/%q: %w", table, key, err)
	}
	if r.cache != nil {
		r.cache[rowKey{table, key}] = cachedRow{}
	}
	return nil
}

// viewRows reads the active generation's committed rows. The generation is
// read first, then the rows; a switch in between could have the old
// generation's rows dropped under the read, so an empty or partial answer
// is checked by reading the generation again: if it is the same, it was
// active for the whole read (generations only move forward) and the answer
// stands; if not, the read is made again on the new one. Readers therefore
// see the old rows or the new ones, never neither.
//
// Inside a unit of the same store (a saga step, a command handler reading a
// read model) the reads go through that unit. On PostgreSQL each of its
// statements sees what is committed, as a read through the pool does, but
// on the connection the unit already holds: a read through the pool would
// take a second one while the unit keeps its first, and units doing that
// at once deadlock a pool no larger than their number.
type viewRows struct {
	src  feed.Source
	reg  *events.Registry
	name string
}

// rows returns what the view reads through (feed.RowsFor).
func (v *viewRows) rows(ctx context.Context) feed.Rows { return feed.RowsFor(ctx, v.reg, v.src) }

// maxViewRetries bounds how often a read follows switches that keep
// happening under it.
const maxViewRetries = 5

func (v *viewRows) active(ctx context.Context) (int, error) {
	st, ok, err := readState(ctx, v.rows(ctx), v.name, feed.LockNone)
	if err != nil {
		return 0, fmt.Errorf("projections: read generation of %q: %w", v.name, err)
	}
	if !ok {
		return 1, nil // never registered: the first generation, empty
	}
	return st.Active, nil
}

// read runs fn on the active generation until the generation is the same
// after fn as before it, when settled says the answer could have been cut
// short by a drop.
func (v *viewRows) read(ctx context.Context, fn func(ns string) (settled bool, err error)) error {
	gen, err := v.active(ctx)
	if err != nil {
		return err
	}
	for range maxViewRetries {
		settled, err := fn(rowNamespace(v.name, gen))
		if err != nil || settled {
			return err
		}
		again, err := v.active(ctx)
		if err != nil || again == gen {
			return err
		}
		gen = again
	}
	return fmt.Errorf("projections: %q switched generations %d times during one read; try again", v.name, maxViewRetries)
}

func (v *viewRows) get(ctx context.Context, table, key string) (feed.Row, bool, error) {
	var row feed.Row
	var found bool
	err := v.read(ctx, func(ns string) (bool, error) {
		var err error
		row, found, err = v.rows(ctx).Get(ctx, ns, table, key, feed.LockNone)
		if err != nil {
			return false, fmt.Errorf("projections: get %q/%q: %w", table, key, err)
		}
		// A row found belongs to a generation that was active a moment
		// ago: a consistent answer even if a switch followed.
		return found, nil
	})
	return row, found, err
}

func (v *viewRows) list(ctx context.Context, table string, q feed.RowQuery) ([]feed.Row, error) {
	var rows []feed.Row
	err := v.read(ctx, func(ns string) (bool, error) {
		var err error
		rows, err = v.rows(ctx).List(ctx, ns, table, q)
		if err != nil {
			return false, fmt.Errorf("projections: list %q: %w", table, err)
		}
		return false, nil // a page may be cut short by a drop: check
	})
	if rows == nil {
		rows = []feed.Row{}
	}
	return rows, err
}

func (v *viewRows) put(context.Context, string, string, json.RawMessage) error {
	return ErrReadOnly
}

func (v *viewRows) del(context.Context, string, string) error { return ErrReadOnly }

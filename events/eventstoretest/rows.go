package eventstoretest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// keys returns the rows' keys.
func keys(rows []feed.Row) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.Key
	}
	return out
}

func testRowsReadYourWrites(t *testing.T, src feed.Source, _ events.Store) {
	ctx := t.Context()
	outside := src.Rows()
	tok := events.MakeToken(7, 8)
	require.NoError(t, outside.Put(ctx, "ns", "t", "a", json.RawMessage(`{"v": 1}`), tok))

	u := begin(t, src)
	in := u.Rows()
	require.NoError(t, in.Put(ctx, "ns", "t", "b", json.RawMessage(`{"v": 2}`), tok))
	require.NoError(t, in.Delete(ctx, "ns", "t", "a"))

	_, ok, err := in.Get(ctx, "ns", "t", "a", feed.LockNone)
	require.NoError(t, err)
	require.False(t, ok, "the unit sees its own delete")
	row, ok, err := in.Get(ctx, "ns", "t", "b", feed.LockNone)
	require.NoError(t, err)
	require.True(t, ok, "the unit sees its own put")
	require.JSONEq(t, `{"v": 2}`, string(row.Value))
	require.Equal(t, tok, row.Token)
	list, err := in.List(ctx, "ns", "t", feed.RowQuery{})
	require.NoError(t, err)
	require.Equal(t, []string{"b"}, keys(list))

	_, ok, err = outside.Get(ctx, "ns", "t", "b", feed.LockNone)
	require.NoError(t, err)
	require.False(t, ok, "invisible outside until the commit")
	_, ok, err = outside.Get(ctx, "ns", "t", "a", feed.LockNone)
	require.NoError(t, err)
	require.True(t, ok)

	require.NoError(t, u.Commit(ctx))
	list, err = outside.List(ctx, "ns", "t", feed.RowQuery{})
	require.NoError(t, err)
	require.Equal(t, []string{"b"}, keys(list))
	require.JSONEq(t, `{"v": 2}`, string(list[0].Value))
	_, err = in.List(ctx, "ns", "t", feed.RowQuery{})
	require.ErrorIs(t, err, events.ErrUnitEnded)

	u = begin(t, src)
	require.NoError(t, u.Rows().Put(ctx, "ns", "t", "c", json.RawMessage(`3`), tok))
	require.NoError(t, u.Rollback(ctx))
	_, ok, err = outside.Get(ctx, "ns", "t", "c", feed.LockNone)
	require.NoError(t, err)
	require.False(t, ok, "a rolled-back put is gone")
}

func testRowsList(t *testing.T, src feed.Source, _ events.Store) {
	ctx := t.Context()
	r := src.Rows()
	// Byte-wise order: upper case before lower case, "a-1" before "a_1",
	// and '%' and '_' are plain characters in a prefix.
	all := []string{"A", "a", "a%1", "a-1", "a_1", "a_2", "ab", "b", "é"}
	for i, k := range all {
		require.NoError(t, r.Put(ctx, "ns", "t", k, json.RawMessage(fmt.Sprint(i)), events.MakeToken(1, uint64(i))))
	}
	require.NoError(t, r.Put(ctx, "ns", "other", "a", json.RawMessage(`0`), events.Token{}))
	require.NoError(t, r.Put(ctx, "ns2", "t", "a", json.RawMessage(`0`), events.Token{}))

	list := func(q feed.RowQuery) []string {
		t.Helper()
		rows, err := r.List(ctx, "ns", "t", q)
		require.NoError(t, err)
		return keys(rows)
	}
	require.Equal(t, all, list(feed.RowQuery{}))
	require.Equal(t, []string{"a_1", "a_2"}, list(feed.RowQuery{Prefix: "a_"}), "no LIKE wildcard")
	require.Equal(t, []string{"a%1"}, list(feed.RowQuery{Prefix: "a%"}))
	require.Equal(t, []string{"a", "a%1"}, list(feed.RowQuery{After: "A", Limit: 2}))
	require.Equal(t, []string{"a-1", "a_1"}, list(feed.RowQuery{After: "a%1", Limit: 2}))
	require.Equal(t, []string{"é", "b", "ab"}, list(feed.RowQuery{Desc: true, Limit: 3}))
	require.Equal(t, []string{"a_1", "a-1"}, list(feed.RowQuery{Desc: true, After: "a_2", Prefix: "a", Limit: 2}))
	require.Empty(t, list(feed.RowQuery{Prefix: "zz"}))

	// Paging through with After visits every key once.
	var paged []string
	q := feed.RowQuery{Limit: 2}
	for {
		page := list(q)
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		q.After = page[len(page)-1]
	}
	require.Equal(t, all, paged)
}

func testRowsDeleteNamespace(t *testing.T, src feed.Source, _ events.Store) {
	ctx := t.Context()
	r := src.Rows()
	for i := range 7 {
		require.NoError(t, r.Put(ctx, "doomed", fmt.Sprintf("t%d", i%2), fmt.Sprintf("k%d", i), json.RawMessage(`{}`), events.Token{}))
	}
	require.NoError(t, r.Put(ctx, "kept", "t0", "k0", json.RawMessage(`{}`), events.Token{}))
	require.NoError(t, r.Delete(ctx, "kept", "t0", "missing"), "deleting a missing row is not an error")

	var batches []int
	for {
		n, err := r.DeleteNamespace(ctx, "doomed", 3)
		require.NoError(t, err)
		batches = append(batches, n)
		if n < 3 {
			break
		}
	}
	require.Equal(t, []int{3, 3, 1}, batches)
	for _, table := range []string{"t0", "t1"} {
		rows, err := r.List(ctx, "doomed", table, feed.RowQuery{})
		require.NoError(t, err)
		require.Empty(t, rows)
	}
	_, ok, err := r.Get(ctx, "kept", "t0", "k0", feed.LockNone)
	require.NoError(t, err)
	require.True(t, ok, "other namespaces stay")

	// In a unit, DeleteNamespace sees the unit's own writes.
	u := begin(t, src)
	require.NoError(t, u.Rows().Put(ctx, "kept", "t9", "new", json.RawMessage(`1`), events.Token{}))
	n, err := u.Rows().DeleteNamespace(ctx, "kept", 10)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.NoError(t, u.Commit(ctx))
	rows, err := r.List(ctx, "kept", "t0", feed.RowQuery{})
	require.NoError(t, err)
	require.Empty(t, rows)
}

func testRowsInvalid(t *testing.T, src feed.Source, _ events.Store) {
	ctx := t.Context()
	r := src.Rows()
	long := func(n int) string { return strings.Repeat("x", n) }
	for name, addr := range map[string][3]string{
		"empty namespace":    {"", "t", "k"},
		"empty table":        {"ns", "", "k"},
		"empty key":          {"ns", "t", ""},
		"NUL in key":         {"ns", "t", "a\x00b"},
		"NUL in namespace":   {"n\x00s", "t", "k"},
		"newline in table":   {"ns", "t\n", "k"},
		"invalid UTF-8 key":  {"ns", "t", "\xff"},
		"long namespace":     {long(feed.MaxRowNamespaceLength + 1), "t", "k"},
		"long table":         {"ns", long(feed.MaxRowTableLength + 1), "k"},
		"long key":           {"ns", "t", long(feed.MaxRowKeyLength + 1)},
		"DEL in key":         {"ns", "t", "a\x7f"},
		"tab in key":         {"ns", "t", "a\tb"},
		"control in ns":      {"\x1bns", "t", "k"},
		"NUL alone":          {"ns", "t", "\x00"},
		"NUL after quote":    {"ns", "t", "'\x00"},
		"NUL in table":       {"ns", "t\x00", "k"},
		"control after SQL":  {"ns", "t", "'; DROP TABLE rows; --\x01"},
		"invalid UTF-8 ns":   {"\xc3", "t", "k"},
		"invalid UTF-8 tbl":  {"ns", "\xe2\x82", "k"},
		"carriage return ns": {"ns\r", "t", "k"},
	} {
		err := r.Put(ctx, addr[0], addr[1], addr[2], json.RawMessage(`1`), events.Token{})
		require.ErrorIs(t, err, feed.ErrInvalidRow, name)
		_, _, err = r.Get(ctx, addr[0], addr[1], addr[2], feed.LockNone)
		require.ErrorIs(t, err, feed.ErrInvalidRow, name)
		require.ErrorIs(t, r.Delete(ctx, addr[0], addr[1], addr[2]), feed.ErrInvalidRow, name)
		bad := feed.RowAddress{Namespace: addr[0], Table: addr[1], Key: addr[2]}
		require.ErrorIs(t, r.Prefetch(ctx, feed.LockNone, feed.RowAddress{Namespace: "ns", Table: "t", Key: "k"}, bad), feed.ErrInvalidRow, name)
		u := begin(t, src)
		require.ErrorIs(t, u.Rows().Prefetch(ctx, feed.LockUpdate, bad), feed.ErrInvalidRow, name)
		require.NoError(t, u.Rollback(ctx))
	}
	for name, v := range map[string]string{
		"empty":          ``,
		"not JSON":       `{`,
		"trailing":       `1 2`,
		"NUL escape":     `"a\u0000b"`,
		"NUL escape key": `{"\u0000": 1}`,
		"too large":      `"` + long(events.DefaultMaxPayloadBytes) + `"`,
		// What PostgreSQL's jsonb refuses at commit, or keeps otherwise
		// than memory: both refuse it up front.
		"lone surrogate": `"\ud800"`,
		"invalid UTF-8":  "\"\xff\"",
		"huge number":    `1e1000000`,
		"tiny number":    `1e-1000000`,
		"duplicate key":  `{"a": 1, "a": 2}`,
		"raw NUL":        "\"a\x00b\"",
	} {
		err := r.Put(ctx, "ns", "t", "k", json.RawMessage(v), events.Token{})
		require.ErrorIs(t, err, feed.ErrInvalidRow, name)
	}
	for name, q := range map[string]feed.RowQuery{
		"negative limit": {Limit: -1},
		"NUL prefix":     {Prefix: "\x00"},
		"bad UTF-8":      {After: "\xff"},
	} {
		_, err := r.List(ctx, "ns", "t", q)
		require.ErrorIs(t, err, feed.ErrInvalidRow, name)
	}
	_, err := r.DeleteNamespace(ctx, "ns", 0)
	require.ErrorIs(t, err, feed.ErrInvalidRow)
	_, _, err = r.Get(ctx, "ns", "t", "k", feed.LockUpdate)
	require.ErrorIs(t, err, feed.ErrInvalidRow, "a lock outside a unit is refused")
	ok := feed.RowAddress{Namespace: "ns", Table: "t", Key: "k"}
	require.ErrorIs(t, r.Prefetch(ctx, feed.LockShare, ok), feed.ErrInvalidRow, "a lock outside a unit is refused")
	require.NoError(t, r.Prefetch(ctx, feed.LockNone, ok), "outside a unit, a Prefetch without a lock does nothing")
	u := begin(t, src)
	require.ErrorIs(t, u.Rows().Prefetch(ctx, feed.Lock(7), ok), feed.ErrInvalidRow, "an unknown lock")
	for _, l := range []feed.Lock{feed.Lock(7), feed.Lock(-1)} {
		_, _, err := u.Rows().Get(ctx, "ns", "t", "k", l)
		require.ErrorIs(t, err, feed.ErrInvalidRow, "Get with the unknown lock %d", l)
	}
	require.NoError(t, u.Rollback(ctx))

	testRowsInvalidControls(t, src)

	// SQL metacharacters and an escaped backslash are ordinary content.
	for _, k := range []string{"'; DROP TABLE rows; --", `a\b`, "%_", `"`} {
		require.NoError(t, r.Put(ctx, "ns'", "t;", k, json.RawMessage(`"\\u0000 is text here"`), events.Token{}), k)
		row, ok, err := r.Get(ctx, "ns'", "t;", k, feed.LockNone)
		require.NoError(t, err)
		require.True(t, ok, k)
		require.JSONEq(t, `"\\u0000 is text here"`, string(row.Value))
	}
}

// testRowsLockedReadNoLostUpdate runs units that read a counter row with
// LockUpdate and write it incremented. PostgreSQL makes the second wait
// for the first; memory lets both run and fails the second commit with
// ErrConflict. Either way no increment is lost, whether the lock is taken
// by the Get or by a Prefetch before it.
func testRowsLockedReadNoLostUpdate(t *testing.T, src feed.Source, _ events.Store) {
	for _, prefetch := range []bool{false, true} {
		t.Run(fmt.Sprintf("prefetch=%v", prefetch), func(t *testing.T) { lockedReadNoLostUpdate(t, src, prefetch) })
	}
}

func lockedReadNoLostUpdate(t *testing.T, src feed.Source, prefetch bool) {
	ctx := t.Context()
	require.NoError(t, src.Rows().Put(ctx, "ns", "t", "n", json.RawMessage(`0`), events.Token{}))
	incr := func() error {
		u, err := src.Checkpoints().Begin(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = u.Rollback(context.WithoutCancel(ctx)) }()
		if prefetch {
			// Gets after it answer from what it read: its lock must
			// protect the row as a locked Get's would.
			other := feed.RowAddress{Namespace: "ns", Table: "t", Key: "absent"}
			if err := u.Rows().Prefetch(ctx, feed.LockUpdate, other, feed.RowAddress{Namespace: "ns", Table: "t", Key: "n"}); err != nil {
				return err
			}
		}
		row, _, err := u.Rows().Get(ctx, "ns", "t", "n", feed.LockUpdate)
		if err != nil {
			return err
		}
		var n int
		if err := json.Unmarshal(row.Value, &n); err != nil {
			return err
		}
		if err := u.Rows().Put(ctx, "ns", "t", "n", json.RawMessage(fmt.Sprint(n+1)), events.Token{}); err != nil {
			return err
		}
		return u.Commit(ctx)
	}
	const workers, each = 4, 10
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		confl int
		errs  []error
	)
	for range workers {
		wg.Go(func() {
			for range each {
				err := incr()
				for errors.Is(err, feed.ErrConflict) {
					mu.Lock()
					confl++
					mu.Unlock()
					err = incr() // run the unit's work again, as the error says
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	row, _, err := src.Rows().Get(ctx, "ns", "t", "n", feed.LockNone)
	require.NoError(t, err)
	require.Empty(t, errs)
	require.JSONEq(t, fmt.Sprint(workers*each), string(row.Value), "no increment lost (%d conflicts retried)", confl)
}

// testRowsPutCopiesValue: a unit holds its writes until it commits (on
// PostgreSQL in memory), so Put must copy the value: a caller reusing its
// buffer, or changing a value Get returned, changes nothing stored.
func testRowsPutCopiesValue(t *testing.T, src feed.Source, _ events.Store) {
	ctx := t.Context()
	outside := src.Rows()
	buf := []byte(`{"v":1}`)
	u := begin(t, src)
	in := u.Rows()
	require.NoError(t, in.Put(ctx, "ns", "t", "k1", buf, events.Token{}))
	copy(buf, `{"v":2}`)
	require.NoError(t, in.Put(ctx, "ns", "t", "k2", buf, events.Token{}))
	copy(buf, `{"v":3}`)
	require.NoError(t, outside.Put(ctx, "ns", "t", "k3", buf, events.Token{}))
	copy(buf, `{"v":4}`)

	want := map[string]string{"k1": `{"v":1}`, "k2": `{"v":2}`, "k3": `{"v":3}`}
	requireValues := func(r feed.Rows, want map[string]string, msg string) {
		t.Helper()
		for k, v := range want {
			row, ok, err := r.Get(ctx, "ns", "t", k, feed.LockNone)
			require.NoError(t, err)
			require.True(t, ok, "%s: %s", msg, k)
			require.JSONEq(t, v, string(row.Value), "%s: %s", msg, k)
		}
		rows, err := r.List(ctx, "ns", "t", feed.RowQuery{})
		require.NoError(t, err)
		require.Len(t, rows, len(want), msg)
		for _, row := range rows {
			require.JSONEq(t, want[row.Key], string(row.Value), "%s: listed %s", msg, row.Key)
		}
	}
	// Values handed out are the caller's to change. Get goes first: on
	// PostgreSQL a List sends the held writes, and Get then reads the
	// transaction instead of what the unit holds.
	clearValues := func(r feed.Rows, key string) {
		t.Helper()
		row, ok, err := r.Get(ctx, "ns", "t", key, feed.LockNone)
		require.NoError(t, err)
		require.True(t, ok, key)
		clear(row.Value)
		rows, err := r.List(ctx, "ns", "t", feed.RowQuery{})
		require.NoError(t, err)
		for _, row := range rows {
			clear(row.Value)
		}
	}
	clearValues(in, "k1")
	clearValues(outside, "k3")
	requireValues(in, want, "in the unit, after the buffer and the values read changed")
	clearValues(in, "k2")
	requireValues(in, want, "in the unit, after the values read changed")

	require.NoError(t, u.Commit(ctx))
	requireValues(outside, want, "committed")
}

// testRowsPrefetchNeverAnswersOlder: after a Prefetch without a lock,
// another unit changes the rows; a locked Get, or a List, then reads them
// from the table, and a Get without a lock after that answers the row as
// it read it, never the older prefetched copy: a unit's reads of a row do
// not go back in time.
func testRowsPrefetchNeverAnswersOlder(t *testing.T, src feed.Source, _ events.Store) {
	ctx := t.Context()
	for _, viaList := range []bool{false, true} {
		key := fmt.Sprintf("k-%v", viaList)
		require.NoError(t, src.Rows().Put(ctx, "ns", "t", key, json.RawMessage(`1`), events.Token{}))
		u := begin(t, src)
		in := u.Rows()
		require.NoError(t, in.Prefetch(ctx, feed.LockNone, feed.RowAddress{Namespace: "ns", Table: "t", Key: key}))
		require.NoError(t, src.Rows().Put(ctx, "ns", "t", key, json.RawMessage(`2`), events.Token{}))
		if viaList {
			rows, err := in.List(ctx, "ns", "t", feed.RowQuery{Prefix: key})
			require.NoError(t, err)
			require.Len(t, rows, 1)
			require.JSONEq(t, `2`, string(rows[0].Value))
		} else {
			row, _, err := in.Get(ctx, "ns", "t", key, feed.LockShare)
			require.NoError(t, err)
			require.JSONEq(t, `2`, string(row.Value))
		}
		row, ok, err := in.Get(ctx, "ns", "t", key, feed.LockNone)
		require.NoError(t, err)
		require.True(t, ok)
		require.JSONEq(t, `2`, string(row.Value), "list=%v: the row as the unit last read it", viaList)
		require.NoError(t, u.Rollback(ctx))
	}
}

// testRowsInvalidControls: a C1 control (U+0080–U+009F) or U+2028 or
// U+2029, at a random position of a namespace, a table or a key, is
// refused with ErrInvalidRow as a C0 control is (events.IsControl), by
// every method of the store's Rows and of a unit's, and nothing is
// stored. List's Prefix and After take them (see feed.ValidateRowAddress).
func testRowsInvalidControls(t *testing.T, src feed.Source) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	ctx := t.Context()
	for round := range 30 {
		addr := [3]string{"ns", "t", fmt.Sprintf("k-%d", round)}
		part := r.IntN(3)
		addr[part] = withControl(r, addr[part])
		name := fmt.Sprintf("seed %d: address %q", seed, addr)
		u := begin(t, src)
		for where, rw := range map[string]feed.Rows{"store": src.Rows(), "unit": u.Rows()} {
			name := name + " through the " + where + "'s Rows"
			require.ErrorIs(t, rw.Put(ctx, addr[0], addr[1], addr[2], json.RawMessage(`1`), events.Token{}), feed.ErrInvalidRow, name)
			locks := []feed.Lock{feed.LockNone}
			if where == "unit" {
				locks = append(locks, feed.LockShare, feed.LockUpdate)
			}
			for _, lock := range locks {
				_, _, err := rw.Get(ctx, addr[0], addr[1], addr[2], lock)
				require.ErrorIs(t, err, feed.ErrInvalidRow, "%s: Get with lock %d", name, lock)
				bad := feed.RowAddress{Namespace: addr[0], Table: addr[1], Key: addr[2]}
				ok := feed.RowAddress{Namespace: "ns", Table: "t", Key: "k"}
				require.ErrorIs(t, rw.Prefetch(ctx, lock, ok, bad), feed.ErrInvalidRow, "%s: Prefetch with lock %d", name, lock)
			}
			require.ErrorIs(t, rw.Delete(ctx, addr[0], addr[1], addr[2]), feed.ErrInvalidRow, name)
			if part < 2 {
				_, err := rw.List(ctx, addr[0], addr[1], feed.RowQuery{})
				require.ErrorIs(t, err, feed.ErrInvalidRow, "%s: List", name)
			}
			if part == 0 {
				_, err := rw.DeleteNamespace(ctx, addr[0], 1000)
				require.ErrorIs(t, err, feed.ErrInvalidRow, "%s: DeleteNamespace", name)
			}
		}
		require.NoError(t, u.Commit(ctx), "%s: refused input leaves the unit usable", name)
	}
	rows, err := src.Rows().List(ctx, "ns", "t", feed.RowQuery{})
	require.NoError(t, err)
	require.Empty(t, rows, "seed %d: nothing was stored", seed)
	for _, q := range []feed.RowQuery{
		{Prefix: withControl(r, "k")},
		{After: withControl(r, "k")},
		{After: withControl(r, "k"), Desc: true},
	} {
		_, err := src.Rows().List(ctx, "ns", "t", q)
		require.NoError(t, err, "seed %d: List %+v: Prefix and After may page past a key an earlier version stored", seed, q)
	}
}

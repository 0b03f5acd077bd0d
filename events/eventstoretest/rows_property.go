package eventstoretest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// rowModel is what one namespace's rows should hold: table, then key.
type rowModel map[string]map[string]feed.Row

func (m rowModel) clone() rowModel {
	out := rowModel{}
	for table, rows := range m {
		out[table] = map[string]feed.Row{}
		for k, r := range rows {
			out[table][k] = r
		}
	}
	return out
}

func (m rowModel) put(table, key string, value json.RawMessage, tok events.Token) {
	if m[table] == nil {
		m[table] = map[string]feed.Row{}
	}
	m[table][key] = feed.Row{Key: key, Value: value, Token: tok}
}

func (m rowModel) del(table, key string) { delete(m[table], key) }

func (m rowModel) get(table, key string) (feed.Row, bool) {
	r, ok := m[table][key]
	return r, ok
}

// list is Rows.List as documented: byte-wise key order, strictly after
// q.After (before it when descending), keys starting with q.Prefix.
func (m rowModel) list(table string, q feed.RowQuery) []feed.Row {
	var keys []string
	for k := range m[table] {
		switch {
		case !strings.HasPrefix(k, q.Prefix):
		case q.After != "" && !q.Desc && k <= q.After:
		case q.After != "" && q.Desc && k >= q.After:
		default:
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	if q.Desc {
		slices.Reverse(keys)
	}
	limit := q.Limit
	if limit == 0 {
		limit = feed.DefaultRowLimit
	}
	out := []feed.Row{}
	for _, k := range keys[:min(len(keys), limit)] {
		out = append(out, m[table][k])
	}
	return out
}

// deleteNamespace deletes the first limit rows in (table, key) order, as
// both stores do.
func (m rowModel) deleteNamespace(limit int) int {
	tables := make([]string, 0, len(m))
	for table := range m {
		tables = append(tables, table)
	}
	slices.Sort(tables)
	n := 0
	for _, table := range tables {
		for _, r := range m.list(table, feed.RowQuery{}) {
			if n == limit {
				return n
			}
			m.del(table, r.Key)
			n++
		}
	}
	return n
}

// requireRows compares rows exactly but for the values, which compare as
// JSON: PostgreSQL stores jsonb and reads it back normalised.
func requireRows(t *testing.T, want, got []feed.Row, msg string, args ...any) {
	t.Helper()
	require.Equal(t, keys(want), keys(got), append([]any{msg}, args...)...)
	for i := range want {
		require.Equal(t, want[i].Token, got[i].Token, append([]any{msg + ": token of %q"}, append(args, want[i].Key)...)...)
		require.JSONEq(t, string(want[i].Value), string(got[i].Value), append([]any{msg + ": value of %q"}, append(args, want[i].Key)...)...)
	}
}

// The property's small address space: two tables, and keys that share
// prefixes and sort byte-wise ("é" after every ASCII key).
var (
	propTables = []string{"t", "u"}
	// Keys, prefixes and afters hold case pairs, LIKE and escape characters
	// and multi-byte runes, whose byte order differs from a collation's:
	// the property holds for them as for plain letters (byte-wise order,
	// literal prefixes).
	propKeys     = []string{"a", "a1", "a2", "ab", "b", "b1", "c", "é", "A", "B1", "a%", "a%b", "a_", "a_b", `a\`, `a\\b`, "a-b", "🚀"}
	propPrefixes = []string{"", "", "a", "a1", "b", "é", "z", "A", "a%", "a_", `a\`, "🚀"}
	propAfters   = []string{"", "", "a", "a1", "a10", "ab", "b", "c", "é", "A", "a%", "a_", `a\`, "a-"}
)

// testRowsUnitProperty runs random sequences of row reads and writes in a
// unit against a map: reads see the unit's own writes, the last write to
// a row wins, and what a commit stores (or a rollback leaves) is the model.
// On PostgreSQL the writes are held in the unit and sent before a read
// that needs them or at the commit, so the sequences cross every path
// between held and sent writes. Each iteration has its own namespace.
func testRowsUnitProperty(t *testing.T, src feed.Source, s events.Store) {
	base := rand.Uint64()
	t.Logf("base seed %d (iteration i runs seed base+i)", base)
	lease, err := src.Checkpoints().Acquire(t.Context(), "rows-property", "owner", longTTL)
	require.NoError(t, err)
	const iterations = 200
	for i := range iterations {
		rowsPropertyIteration(t, src, s, base+uint64(i), lease, i)
	}
}

func rowsPropertyIteration(t *testing.T, src feed.Source, s events.Store, seed uint64, lease feed.Lease, i int) {
	t.Helper()
	ctx := t.Context()
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	ns := fmt.Sprintf("prop-%d", i)
	stream := fmt.Sprintf("prop-%d", i)
	value := func() json.RawMessage { return json.RawMessage(fmt.Sprintf(`{"n": %d}`, r.IntN(1000))) }
	token := func() events.Token { return events.MakeToken(uint64(1+r.IntN(100)), uint64(r.IntN(10))) }
	pick := func(from []string) string { return from[r.IntN(len(from))] }

	before := rowModel{}
	for range r.IntN(6) {
		table, key, v, tok := pick(propTables), pick(propKeys), value(), token()
		require.NoError(t, src.Rows().Put(ctx, ns, table, key, v, tok), "seed %d", seed)
		before.put(table, key, v, tok)
	}

	model := before.clone()
	u := begin(t, src)
	in := u.Rows()
	var (
		log      []string // the ops so far, for the failure message
		appended int64
	)
	for range 1 + r.IntN(40) {
		table, key := pick(propTables), pick(propKeys)
		switch op := r.IntN(24); {
		case op < 6:
			v, tok := value(), token()
			log = append(log, fmt.Sprintf("Put(%s/%s, %s, %d.%d)", table, key, v, tok.Major(), tok.Minor()))
			require.NoError(t, in.Put(ctx, ns, table, key, v, tok), "seed %d: %v", seed, log)
			model.put(table, key, v, tok)
		case op < 10:
			log = append(log, fmt.Sprintf("Delete(%s/%s)", table, key))
			require.NoError(t, in.Delete(ctx, ns, table, key), "seed %d: %v", seed, log)
			model.del(table, key)
		case op < 15:
			lock := feed.LockNone
			if op >= 13 {
				lock = []feed.Lock{feed.LockShare, feed.LockUpdate}[r.IntN(2)]
			}
			log = append(log, fmt.Sprintf("Get(%s/%s, lock %d)", table, key, lock))
			got, ok, err := in.Get(ctx, ns, table, key, lock)
			require.NoError(t, err, "seed %d: %v", seed, log)
			want, wantOK := model.get(table, key)
			require.Equal(t, wantOK, ok, "seed %d: %v", seed, log)
			if ok {
				requireRows(t, []feed.Row{want}, []feed.Row{got}, "seed %d: %v", seed, log)
			}
		case op < 18:
			q := feed.RowQuery{Prefix: pick(propPrefixes), After: pick(propAfters), Limit: r.IntN(5), Desc: r.IntN(2) == 0}
			log = append(log, fmt.Sprintf("List(%s, %+v)", table, q))
			got, err := in.List(ctx, ns, table, q)
			require.NoError(t, err, "seed %d: %v", seed, log)
			requireRows(t, model.list(table, q), got, "seed %d: %v", seed, log)
		case op < 19:
			limit := 1 + r.IntN(3)
			log = append(log, fmt.Sprintf("DeleteNamespace(%d)", limit))
			n, err := in.DeleteNamespace(ctx, ns, limit)
			require.NoError(t, err, "seed %d: %v", seed, log)
			require.Equal(t, model.deleteNamespace(limit), n, "seed %d: %v", seed, log)
		case op >= 20:
			// Later Gets may answer from what it read: they must still
			// see every write the unit makes after it.
			lock := []feed.Lock{feed.LockNone, feed.LockShare, feed.LockUpdate}[r.IntN(3)]
			var addrs []feed.RowAddress
			for range r.IntN(12) {
				addrs = append(addrs, feed.RowAddress{Namespace: ns, Table: pick(propTables), Key: pick(propKeys)})
			}
			log = append(log, fmt.Sprintf("Prefetch(lock %d, %v)", lock, addrs))
			require.NoError(t, in.Prefetch(ctx, lock, addrs...), "seed %d: %v", seed, log)
		default:
			// An append begins the transaction on PostgreSQL without
			// sending the held writes: the commit then runs in it.
			log = append(log, "Append")
			_, err := u.Append(ctx, stream, events.AnyVersion, placed(stream, 1))
			require.NoError(t, err, "seed %d: %v", seed, log)
			appended++
		}
	}

	want := before
	switch end := r.IntN(3); end {
	case 0:
		log = append(log, "Rollback")
		require.NoError(t, u.Rollback(ctx), "seed %d: %v", seed, log)
		appended = 0
	default:
		var moves []feed.Move
		if end == 2 {
			moves = []feed.Move{{Lease: lease, Position: events.MakeToken(uint64(i+1), 0)}}
		}
		log = append(log, fmt.Sprintf("Commit(%d moves)", len(moves)))
		require.NoError(t, u.Commit(ctx, moves...), "seed %d: %v", seed, log)
		want = model
		if end == 2 {
			requirePosition(t, src.Checkpoints(), lease.Name, moves[0].Position)
		}
	}
	_, _, err := in.Get(ctx, ns, "t", "a", feed.LockNone)
	require.ErrorIs(t, err, events.ErrUnitEnded, "seed %d: %v", seed, log)
	for _, table := range propTables {
		got, err := src.Rows().List(ctx, ns, table, feed.RowQuery{})
		require.NoError(t, err, "seed %d: %v", seed, log)
		requireRows(t, want.list(table, feed.RowQuery{}), got, "seed %d: stored rows of %s after %v", seed, table, log)
	}
	v, err := s.StreamVersion(ctx, stream)
	require.NoError(t, err, "seed %d: %v", seed, log)
	require.Equal(t, appended, v, "seed %d: the unit's appends after %v", seed, log)
}

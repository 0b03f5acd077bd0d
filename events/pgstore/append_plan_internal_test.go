package pgstore

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/pgtest"
)

// TestAppendPlansUseTheIndexes: the plans PostgreSQL caches for appends
// read the stream's head from its index, and a one-event append in a
// transaction probes the event id index for its check, even on a
// table of a few hundred events. The check written as "= ANY($2)" is
// planned for ten ids, and there a sequential scan looks cheaper until the
// table holds about a thousand events; a plan cached on a young table
// then scanned the whole, growing table on every append.
func TestAppendPlansUseTheIndexes(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	ctx := t.Context()
	_, err := db.Pool.Exec(ctx, `INSERT INTO events (sort_key, event_id, stream_id, version, type, payload, category)
SELECT i, gen_random_uuid(), 's-' || i, 1, 't', '{"n": 1}', 's' FROM generate_series(1, 300) i`)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `ANALYZE events`)
	require.NoError(t, err)
	q := newQueries(db.Schema)

	const oneArgs = `'s-new', gen_random_uuid(), 't', NULL, '{}', NULL, 's', -1`
	const manyArgs = `'s-new', ARRAY[gen_random_uuid(), gen_random_uuid()], ARRAY['t', 't'], NULL, ARRAY['{}', '{}']::jsonb[], NULL, 's', -1`
	for _, c := range []struct {
		name, sql, args string
		idCheck         bool
	}{
		{"one", q.one, oneArgs, false},
		{"tx one", q.txOne, oneArgs, true},
		{"many", q.many, manyArgs, false},
	} {
		p := genericPlan(t, db, c.sql, c.args)
		t.Logf("%s:\n%s", c.name, p)
		require.NotContains(t, p, "Seq Scan on events", c.name)
		require.Contains(t, p, "events_stream_id_version_key", fmt.Sprintf("%s: the head is read from the stream's index", c.name))
		if c.idCheck {
			require.Contains(t, p, "events_event_id_key", fmt.Sprintf("%s: the id check probes the unique index", c.name))
		}
	}
}

// genericPlan returns the plan a connection keeps for sql after five runs
// of it (a generic plan), with args as SQL literals.
func genericPlan(t *testing.T, db *pgtest.DB, sql, args string) string {
	t.Helper()
	ctx := t.Context()
	conn, err := db.Pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `SET LOCAL plan_cache_mode = force_generic_plan`)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `PREPARE generic_plan AS `+sql)
	require.NoError(t, err)
	rows, err := tx.Query(ctx, `EXPLAIN EXECUTE generic_plan(`+args+`)`)
	require.NoError(t, err)
	var lines []string
	for rows.Next() {
		var l string
		require.NoError(t, rows.Scan(&l))
		lines = append(lines, l)
	}
	require.NoError(t, rows.Err())
	// A prepared statement outlives the transaction, on a pooled
	// connection.
	_, err = tx.Exec(ctx, `DEALLOCATE generic_plan`)
	require.NoError(t, err)
	return strings.Join(lines, "\n")
}

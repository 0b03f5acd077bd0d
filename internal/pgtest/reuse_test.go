package pgtest

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/migrations"
)

// TestReuseHandsOnOnlyEmptiedUnchangedSchemas: with reuse on, the schema
// of a test that passed comes back to the next test empty (every table,
// identity restarted) and at the newest version; one whose catalog a test
// changed is dropped, and the next test gets a fresh one.
func TestReuseHandsOnOnlyEmptiedUnchangedSchemas(t *testing.T) {
	// Not parallel: reuse is the process's setting.
	var exited []int
	exit = func(code int) { exited = append(exited, code) }
	defer func() { exit = os.Exit }()
	end := ReuseSchemas()
	var first, second string
	defer func() {
		end(3)
		require.Equal(t, []int{3}, exited, "the end of the tests exits with the code goleak hands on")
		for _, s := range []string{first, second} {
			require.False(t, schemaExists(t, s), "schema %s is dropped at the end", s)
		}
	}()
	latest, err := migrations.Latest()
	require.NoError(t, err)

	t.Run("fills", func(t *testing.T) {
		db := New(t, nil)
		first = db.Schema
		for v := 1; v <= 3; v++ {
			_, err := db.Pool.Exec(t.Context(), `INSERT INTO events (sort_key, event_id, stream_id, version, type, payload, category)
				VALUES (1, gen_random_uuid(), 's', $1, 't', '{}', 'c')`, v)
			require.NoError(t, err)
		}
		for _, q := range []string{
			`INSERT INTO checkpoints (name) VALUES ('c')`,
			`INSERT INTO rows (namespace, tbl, key, value, major, minor) VALUES ('n', 't', 'k', '{}', 1, 1)`,
			`INSERT INTO members (grp, member, expires_at) VALUES ('g', 'm', now())`,
		} {
			_, err := db.Pool.Exec(t.Context(), q)
			require.NoError(t, err)
		}
		for _, table := range tablesOf(t, db) {
			require.NotZero(t, count(t, db, table), "the test writes to every table (%s), or emptying is not shown", table)
		}
	})
	t.Run("gets it back empty", func(t *testing.T) {
		db := New(t, nil)
		require.Equal(t, first, db.Schema, "the schema is handed on")
		for _, table := range tablesOf(t, db) {
			require.Zero(t, count(t, db, table), "table %s is emptied", table)
		}
		v, err := migrations.Current(t.Context(), db.Pool, &migrations.Config{Schema: db.Schema})
		require.NoError(t, err)
		require.Equal(t, latest, v)
		var seq int64
		require.NoError(t, db.Pool.QueryRow(t.Context(), `INSERT INTO events (sort_key, event_id, stream_id, version, type, payload, category)
			VALUES (1, gen_random_uuid(), 's', 1, 't', '{}', 'c') RETURNING seq`).Scan(&seq))
		require.EqualValues(t, 1, seq, "identity columns start over")
		// A changed catalog: the schema is not handed on.
		_, err = db.Pool.Exec(t.Context(), "CREATE TABLE extra (id int)")
		require.NoError(t, err)
	})
	require.False(t, schemaExists(t, first), "a schema whose catalog changed is dropped")
	t.Run("gets a fresh one", func(t *testing.T) {
		db := New(t, nil)
		second = db.Schema
		require.NotEqual(t, first, db.Schema)
		require.Zero(t, count(t, db, "events"))
	})
	require.True(t, schemaExists(t, second), "kept for the next test until the end")
}

func tablesOf(t *testing.T, db *DB) []string {
	t.Helper()
	rows, err := db.Pool.Query(t.Context(), `SELECT relname FROM pg_class
		WHERE relnamespace = $1::regnamespace AND relkind IN ('r', 'p') AND relname <> 'schema_version'`, db.Schema)
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.NotEmpty(t, tables)
	return tables
}

func count(t *testing.T, db *DB, table string) int {
	t.Helper()
	var n int
	require.NoError(t, db.Pool.QueryRow(t.Context(), "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&n))
	return n
}

func schemaExists(t *testing.T, schema string) bool {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), URL(t))
	require.NoError(t, err)
	defer func() { _ = conn.Close(t.Context()) }()
	var ok bool
	require.NoError(t, conn.QueryRow(t.Context(), "SELECT to_regnamespace($1) IS NOT NULL", schema).Scan(&ok))
	return ok
}

// TestSweepDropsOnlyAbandonedKeptSchemas: kept schemas older than
// keptMaxAge (a process that died before its end left them) are dropped
// when a process turns reuse on; younger ones, and other schemas, stay.
func TestSweepDropsOnlyAbandonedKeptSchemas(t *testing.T) {
	t.Parallel()
	conn, err := pgx.Connect(t.Context(), URL(t))
	require.NoError(t, err)
	defer func() { _ = conn.Close(t.Context()) }()
	now := time.Now()
	old := fmt.Sprintf("t_k%d_%s", now.Add(-keptMaxAge-time.Minute).Unix(), randomHex(4))
	young := fmt.Sprintf("t_k%d_%s", now.Add(-keptMaxAge+time.Minute).Unix(), randomHex(4))
	other := "t_" + randomHex(6)
	for _, s := range []string{old, young, other} {
		_, err := conn.Exec(t.Context(), "CREATE SCHEMA "+pgx.Identifier{s}.Sanitize())
		require.NoError(t, err)
		t.Cleanup(func() { Drop(t, URL(t), s) })
	}
	sweepKept(URL(t))
	require.False(t, schemaExists(t, old), "an abandoned kept schema is dropped")
	require.True(t, schemaExists(t, young), "a kept schema of a process that may still run stays")
	require.True(t, schemaExists(t, other), "a schema that is not a kept one stays")
}

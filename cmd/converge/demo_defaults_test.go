package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"regexp"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/pgtest"
)

// TestDemoRunsInMemoryEvenWithDatabaseURL: `converge demo` runs in memory
// unless --database-url or --postgres is given, even with DATABASE_URL set
// (here to a server that is not there, so a run that tried PostgreSQL
// would fail). Not parallel: it sets DATABASE_URL for the process.
func TestDemoRunsInMemoryEvenWithDatabaseURL(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none?connect_timeout=5")
	out, err := runCLI(t, "demo", "--orders", "8", "--customers", "2", "--lag", "5ms")
	require.NoError(t, err, out)
	require.Contains(t, out, "Summary (8 orders in ")
	require.Contains(t, out, "8/8 orders closed")
	require.Contains(t, out, "every saga reached a terminal state")
	require.Contains(t, out, "every read model equals a clean rebuild from the events")
	require.NotContains(t, out, "demo schema kept", "no PostgreSQL schema was made")
}

var keptSchema = regexp.MustCompile(`(?m)^demo schema kept: (\S+)$`)

// TestDemoKeepKeepsItsSchema: `converge demo --keep` on PostgreSQL prints
// the schema it ran in and leaves it there, migrated and holding the run's
// events.
func TestDemoKeepKeepsItsSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.URL(t)
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	prefix := "t_keep" + hex.EncodeToString(suffix)
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	// Drop whatever the run leaves, even when an assertion fails first.
	t.Cleanup(func() {
		rows, err := conn.Query(context.Background(), `SELECT nspname FROM pg_namespace WHERE nspname LIKE $1`, prefix+"_demo_%")
		require.NoError(t, err)
		schemas, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		for _, s := range schemas {
			_, err := conn.Exec(context.Background(), "DROP SCHEMA "+pgx.Identifier{s}.Sanitize()+" CASCADE")
			require.NoError(t, err)
		}
	})

	out, err := runCLI(t, "demo", "--database-url", url, "--schema", prefix, "--keep", "--orders", "6", "--customers", "2", "--lag", "5ms")
	require.NoError(t, err, out)
	require.Contains(t, out, "every read model equals a clean rebuild from the events")
	m := keptSchema.FindStringSubmatch(out)
	require.NotNil(t, m, "--keep prints the schema:\n%s", out)
	schema := m[1]
	require.Regexp(t, "^"+prefix+"_demo_[0-9a-f]{8}$", schema)

	var found int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, schema).Scan(&found))
	require.Equal(t, 1, found, "the schema %s is kept", schema)
	var stored int
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{schema, "events"}.Sanitize()).Scan(&stored))
	require.Positive(t, stored, "the kept schema holds the run's events")
}

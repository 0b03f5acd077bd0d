package main

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/migrations"
)

// runCLI runs converge in-process with args and returns what it printed.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&out)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	latest, err := migrations.Latest()
	require.NoError(t, err)
	conn := []string{"--database-url", db.URL, "--schema", db.Schema}

	out, err := runCLI(t, append([]string{"migrate", "--status"}, conn...)...)
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("schema %q at version 0 (latest %d): %d pending, run `converge migrate --schema %s` to apply\n",
		db.Schema, latest, latest, db.Schema), out)

	// Twice: migrate is idempotent.
	want := fmt.Sprintf("schema %q at version %d (latest %d)\n", db.Schema, latest, latest)
	for range 2 {
		out, err = runCLI(t, append([]string{"migrate"}, conn...)...)
		require.NoError(t, err)
		require.Equal(t, want, out)
	}

	out, err = runCLI(t, append([]string{"migrate", "--status"}, conn...)...)
	require.NoError(t, err)
	require.Equal(t, want, out)

	v, err := migrations.Current(context.Background(), db.Pool, &migrations.Config{Schema: db.Schema})
	require.NoError(t, err)
	require.Equal(t, latest, v)
}

func TestMigrateRejectsBadSchema(t *testing.T) {
	t.Parallel()
	// The schema is checked before connecting: this URL is never dialled.
	_, err := runCLI(t, "migrate", "--database-url", "postgres://nobody@127.0.0.1:1/none", "--schema", "Bad-Name")
	require.ErrorContains(t, err, `--schema: schema "Bad-Name": use 1 to 63 lower-case letters`)
}

func TestMigrateSaysWhenPostgresIsUnreachable(t *testing.T) {
	t.Parallel()
	// Port 1 on loopback refuses at once.
	_, err := runCLI(t, "migrate", "--database-url", "postgres://nobody:secret@127.0.0.1:1/none?connect_timeout=5")
	require.ErrorContains(t, err, "connect to PostgreSQL at nobody@127.0.0.1:1/none")
	require.ErrorContains(t, err, "is PostgreSQL running? set --database-url or DATABASE_URL")
	require.NotContains(t, err.Error(), "secret")
}

func TestDatabaseURLFallsBackToEnvironment(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://from-env/db"}
	getenv := func(k string) string { return env[k] }

	require.Equal(t, "postgres://from-flag/db", databaseURL("postgres://from-flag/db", getenv))
	require.Equal(t, "postgres://from-env/db", databaseURL("", getenv))
	// Empty on purpose: pgx then reads PGHOST, PGPORT and the rest.
	require.Empty(t, databaseURL("", func(string) string { return "" }))
}

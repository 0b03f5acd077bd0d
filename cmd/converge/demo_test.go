package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/pgtest"
)

func TestDemoRunsInMemory(t *testing.T) {
	t.Parallel()
	out, err := runCLI(t, "demo", "--orders", "20", "--customers", "4", "--lag", "10ms")
	require.NoError(t, err, out)
	require.Contains(t, out, "20/20 orders closed")
	require.Contains(t, out, "every saga reached a terminal state")
	require.Contains(t, out, "every read model equals a clean rebuild from the events")
	require.Contains(t, out, "money and stock match the confirmed orders")
}

// TestDemoSeedZeroIsSeedZero: `converge demo --seed 0` runs seed 0, as it
// says, not the default seed 1.
func TestDemoSeedZeroIsSeedZero(t *testing.T) {
	t.Parallel()
	out, err := runCLI(t, "demo", "--seed", "0", "--orders", "4", "--customers", "2", "--lag", "5ms")
	require.NoError(t, err, out)
	require.Contains(t, out, "(seed 0)")
}

func TestDemoRefusesBadFlags(t *testing.T) {
	t.Parallel()
	_, err := runCLI(t, "demo", "--orders", "0")
	require.ErrorContains(t, err, "--orders 0")
}

// TestDemoOnPostgreSQLTwice: the demo runs again on the same database (a
// fresh schema per run) and drops its schema.
func TestDemoOnPostgreSQLTwice(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	prefix := "t_demo" + hex.EncodeToString(suffix)
	for range 2 {
		out, err := runCLI(t, "demo", "--database-url", url, "--schema", prefix, "--orders", "12", "--customers", "3", "--lag", "10ms")
		require.NoError(t, err, out)
		require.Contains(t, out, "every read model equals a clean rebuild from the events")
	}
	conn, err := pgx.Connect(context.Background(), url)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var left int
	require.NoError(t, conn.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_namespace WHERE nspname LIKE $1`, prefix+"_demo_%").Scan(&left))
	require.Zero(t, left, "the demo drops its schemas")
}

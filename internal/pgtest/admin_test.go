package pgtest

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCleanupSurvivesAConnectionTheServerEnded: a free clean-up connection
// whose session the server ended (a test that terminated sessions) is
// replaced at its next use, and the statement runs.
func TestCleanupSurvivesAConnectionTheServerEnded(t *testing.T) {
	// Not parallel: no other test may take the connection off the free
	// list between the two uses.
	ctx := t.Context()
	closeAdmin(ctx)
	var pid uint32
	require.NoError(t, withAdmin(ctx, URL(t), func(conn *pgx.Conn) error {
		pid = conn.PgConn().PID()
		return nil
	}))
	other, err := pgx.Connect(ctx, URL(t))
	require.NoError(t, err)
	defer func() { _ = other.Close(ctx) }()
	var ended bool
	require.NoError(t, other.QueryRow(ctx, "SELECT pg_terminate_backend($1)", int64(pid)).Scan(&ended))
	require.True(t, ended)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var open bool
		require.NoError(c, other.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)", int64(pid)).Scan(&open))
		assert.False(c, open)
	}, 10*time.Second, 10*time.Millisecond, "the session ended")

	var got uint32
	require.NoError(t, withAdmin(ctx, URL(t), func(conn *pgx.Conn) error {
		got = conn.PgConn().PID()
		_, err := conn.Exec(ctx, "SELECT 1")
		return err
	}), "the clean-up runs on a new connection")
	require.NotEqual(t, pid, got)
}

// TestCatalogsAreVacuumedEveryFewSchemas: among any vacuumEvery schemas a
// process ends, one vacuums the catalogs.
func TestCatalogsAreVacuumedEveryFewSchemas(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, URL(t))
	require.NoError(t, err)
	defer func() { _ = conn.Close(ctx) }()
	vacuums := func(c require.TestingT) int64 {
		var n int64
		require.NoError(c, conn.QueryRow(ctx, "SELECT vacuum_count FROM pg_stat_sys_tables WHERE relid = 'pg_catalog.pg_attribute'::regclass").Scan(&n))
		return n
	}
	before := vacuums(t)
	for range vacuumEvery {
		schemaEnded(ctx, URL(t))
	}
	// The vacuuming session reports its statistics soon after, not at once.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Greater(c, vacuums(c), before)
	}, 10*time.Second, 50*time.Millisecond, "the catalogs were vacuumed")
}

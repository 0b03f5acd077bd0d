package pgtest

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLeakedTransactionIsFoundAndTerminated leaves a transaction open, as
// a test that failed half-way does: the clean-up's check sees the
// connection in use, and terminating the pool's sessions ends the
// transaction on the server.
func TestLeakedTransactionIsFoundAndTerminated(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pcfg, err := pgxpool.ParseConfig(URL(t))
	require.NoError(t, err)
	pool, pids, err := trackedPool(ctx, pcfg)
	require.NoError(t, err)
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	var pid uint32
	require.NoError(t, tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid))
	_, err = tx.Exec(ctx, "SELECT pg_current_xact_id()")
	require.NoError(t, err)

	require.EqualValues(t, 1, awaitReleased(pool, 20*time.Millisecond), "the open transaction's connection is in use")
	terminate(t, URL(t), pids)

	other, err := pgx.Connect(ctx, URL(t))
	require.NoError(t, err)
	defer other.Close(ctx)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var open bool
		require.NoError(c, other.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", int64(pid)).Scan(&open))
		assert.False(c, open, "backend %d still listed", pid)
	}, 10*time.Second, 10*time.Millisecond, "the session is gone")
	require.Error(t, tx.Rollback(ctx), "the connection was terminated")
	require.EqualValues(t, 0, awaitReleased(pool, 10*time.Second))
	pool.Close()
}

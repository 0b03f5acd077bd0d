package pgstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestTransactionAppendsAgainToAStreamThatTurnedContended appends to a
// stream in a transaction, lets the stream turn contended and a second
// transaction queue behind the first append, then appends to the stream
// again in the first transaction. Both must land, in order, with no
// deadlock: had the first append taken no lock because the stream was not
// contended yet, its second append would queue behind the second
// transaction, which waits for the first append's version.
func TestTransactionAppendsAgainToAStreamThatTurnedContended(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	ctx := t.Context()
	st := openStore(t, db)
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 0))
	for round := range 3 {
		msg := fmt.Sprintf("seed %d, round %d", seed, round)
		stream := fmt.Sprintf("order-turned%d", round)
		first, again, other := 1+r.IntN(3), 1+r.IntN(3), 1+r.IntN(3)

		tx, err := db.Pool.Begin(ctx)
		require.NoError(t, err, msg)
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		var pid int32
		require.NoError(t, tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid), msg)
		_, err = st.AppendTx(ctx, tx, stream, events.NoStream, rawEvents(first)...)
		require.NoError(t, err, msg)

		pgstore.MarkContended(st, stream)
		// StreamExists holds once the first transaction commits: the
		// queued append reads the stream after it.
		expected := []events.ExpectedVersion{events.AnyVersion, events.StreamExists}[r.IntN(2)]
		done := startAppend(ctx, db, st, stream, expected, rawEvents(other), true)
		awaitBlockedBy(t, db, pid, msg)

		res, err := st.AppendTx(ctx, tx, stream, events.AnyVersion, rawEvents(again)...)
		require.NoError(t, err, "the transaction's second append, %s", msg)
		require.Equal(t, int64(first+1), res.FirstVersion, msg)
		require.NoError(t, tx.Commit(ctx), msg)

		got := <-done
		require.NoError(t, got.err, "the queued transaction, %s", msg)
		require.NoError(t, got.usable, msg)
		require.Equal(t, int64(first+again+1), got.res.FirstVersion, msg)
		v, err := st.StreamVersion(ctx, stream)
		require.NoError(t, err, msg)
		require.Equal(t, int64(first+again+other), v, msg)
		requireTokensFollowVersions(t, st, stream)
	}
}

// awaitBlockedBy waits until a session of the test's database waits for
// a lock that backend pid holds.
func awaitBlockedBy(t *testing.T, db *pgtest.DB, pid int32, msg string) {
	t.Helper()
	require.Eventually(t, func() bool {
		var blocked bool
		require.NoError(t, db.Pool.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
WHERE datname = current_database() AND $1::int = ANY(pg_blocking_pids(pid)))`, pid).Scan(&blocked))
		return blocked
	}, 10*time.Second, 5*time.Millisecond, "no append queued behind the transaction, %s", msg)
}

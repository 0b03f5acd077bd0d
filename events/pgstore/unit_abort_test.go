package pgstore_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
)

// abortWait bounds the waits of the abort tests: far beyond what the
// awaited step takes, far below the statements they abort (60s).
const abortWait = 10 * time.Second

// createMarks creates the table the abort tests' units write to.
func createMarks(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	_, err := pool.Exec(t.Context(), `CREATE TABLE abort_marks (id text NOT NULL)`)
	require.NoError(t, err)
}

func countMarks(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(*) FROM abort_marks`).Scan(&n))
	return n
}

// awaitSleeping waits until the backend pid runs pg_sleep on the server:
// a statement in flight on its connection.
func awaitSleeping(t *testing.T, pool *pgxpool.Pool, pid uint32) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var active bool
		require.NoError(c, pool.QueryRow(t.Context(),
			`SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query LIKE '%pg_sleep%')`,
			int64(pid)).Scan(&active))
		require.True(c, active, "backend %d is not running its pg_sleep yet", pid)
	}, abortWait, 10*time.Millisecond)
}

// awaitGone waits until the backend pid has ended: its session, its
// transaction and its locks are gone, and no one can be handed its
// connection.
func awaitGone(t *testing.T, pool *pgxpool.Pool, pid uint32) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var alive bool
		require.NoError(c, pool.QueryRow(t.Context(),
			`SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)`, int64(pid)).Scan(&alive))
		require.False(c, alive, "the aborted unit's backend %d is still connected", pid)
	}, abortWait, 10*time.Millisecond)
}

// beginAborter begins a unit and returns it with its transaction as
// TxFromContext hands it to a handler, begun, and its backend's pid.
func beginAborter(t *testing.T, st *pgstore.Store) (feed.Unit, feed.Aborter, pgx.Tx, uint32) {
	t.Helper()
	ctx := t.Context()
	u, err := st.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = u.Rollback(context.Background()) })
	a, ok := u.(feed.Aborter)
	require.True(t, ok, "a PostgreSQL unit is a feed.Aborter")
	tx, err := pgstore.TxFromContext(u.Context(ctx))
	require.NoError(t, err)
	var pid uint32
	require.NoError(t, tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
	return u, a, tx, pid
}

// requireStoreWorks appends, and commits a unit that writes, after an
// abort: the pool lost a connection, not its use.
func requireStoreWorks(t *testing.T, b bundle) {
	t.Helper()
	ctx := t.Context()
	_, err := b.store.Append(ctx, "after-1", events.AnyVersion, events.Event{Data: events.Raw{Type: "after", Payload: json.RawMessage(`{}`)}})
	require.NoError(t, err, "an append after an abort")
	u, err := b.store.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	tx, err := pgstore.TxFromContext(u.Context(ctx))
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO abort_marks VALUES ('after')`)
	require.NoError(t, err, "a unit after an abort")
	require.NoError(t, u.Commit(ctx))
	var n int
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM abort_marks WHERE id = 'after'`).Scan(&n))
	require.Equal(t, 1, n, "the unit after the abort committed")
}

// Abort ends a unit whose handler is running a statement on its
// transaction, a statement that ignores every context: the statement
// fails at once, the unit's writes (sent, held and appended) are
// discarded, its backend ends (so its connection serves no one else), and
// the store goes on. Under -race, nothing of the handler's connection is
// touched from two goroutines at once.
func TestUnitAbortEndsARunningStatement(t *testing.T) {
	t.Parallel()
	b := setup(t, events.NewRegistry(), 4)
	ctx := t.Context()
	createMarks(t, b.db.Pool)
	u, a, tx, pid := beginAborter(t, b.store)
	_, err := tx.Exec(ctx, `INSERT INTO abort_marks VALUES ('sent')`)
	require.NoError(t, err)
	uctx := u.Context(ctx)
	require.NoError(t, u.Rows().Put(uctx, "ns", "t", "held", json.RawMessage(`{}`), events.Token{}))
	_, err = u.Append(uctx, "order-1", events.NoStream, events.Event{Data: events.Raw{Type: "placed", Payload: json.RawMessage(`{}`)}})
	require.NoError(t, err)

	slept := make(chan error, 1)
	go func() {
		// As a handler that ignores its context.
		_, err := tx.Exec(context.WithoutCancel(ctx), `SELECT pg_sleep(60)`)
		slept <- err
	}()
	awaitSleeping(t, b.db.Pool, pid)

	require.NoError(t, a.Abort(ctx))
	select {
	case err := <-slept:
		require.Error(t, err, "the statement running when its unit was aborted must fail")
	case <-time.After(abortWait):
		t.Fatal("the statement running when its unit was aborted did not return")
	}
	awaitGone(t, b.db.Pool, pid)

	require.Zero(t, countMarks(t, b.db.Pool), "the aborted unit's write was committed")
	_, found, err := b.store.Rows().Get(ctx, "ns", "t", "held", feed.LockNone)
	require.NoError(t, err)
	require.False(t, found, "the aborted unit's held row write was committed")
	v, err := b.store.StreamVersion(ctx, "order-1")
	require.NoError(t, err)
	require.Zero(t, v, "the aborted unit's append was committed")

	_, err = tx.Exec(ctx, `INSERT INTO abort_marks VALUES ('late')`)
	require.ErrorIs(t, err, pgx.ErrTxClosed, "a statement of the handler after the abort")
	_, err = u.Append(uctx, "order-1", events.NoStream, events.Event{Data: events.Raw{Type: "placed", Payload: json.RawMessage(`{}`)}})
	require.ErrorIs(t, err, events.ErrUnitEnded)
	require.ErrorIs(t, u.Commit(ctx), events.ErrUnitEnded)
	require.NoError(t, a.Abort(ctx), "a second Abort does nothing")
	require.NoError(t, u.Rollback(ctx), "a Rollback after Abort does nothing")

	requireStoreWorks(t, b)
}

// Abort between two statements of a handler: the connection is not
// handed back to the pool, where the handler's next statement could run
// in another unit's transaction; the backend ends with the unit's write
// undone, and the handler's next statement fails.
func TestUnitAbortBetweenStatements(t *testing.T) {
	t.Parallel()
	b := setup(t, events.NewRegistry(), 4)
	ctx := t.Context()
	createMarks(t, b.db.Pool)
	_, a, tx, pid := beginAborter(t, b.store)
	_, err := tx.Exec(ctx, `INSERT INTO abort_marks VALUES ('sent')`)
	require.NoError(t, err)

	require.NoError(t, a.Abort(ctx))
	awaitGone(t, b.db.Pool, pid)
	require.Zero(t, countMarks(t, b.db.Pool), "the aborted unit's write was committed")
	_, err = tx.Exec(ctx, `INSERT INTO abort_marks VALUES ('late')`)
	require.ErrorIs(t, err, pgx.ErrTxClosed, "a statement of the handler after the abort")

	requireStoreWorks(t, b)
}

// Abort does nothing to a unit that has ended: what it committed stays,
// and its connection went back to the pool, where it serves others.
func TestUnitAbortAfterItEndedDoesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, events.NewRegistry(), 1)
	ctx := t.Context()
	createMarks(t, b.db.Pool)

	u, a, tx, pid := beginAborter(t, b.store)
	_, err := tx.Exec(ctx, `INSERT INTO abort_marks VALUES ('committed')`)
	require.NoError(t, err)
	require.NoError(t, u.Commit(ctx))
	require.NoError(t, a.Abort(ctx))
	require.NoError(t, a.Abort(ctx))
	require.Equal(t, 1, countMarks(t, b.db.Pool), "Abort after Commit undid the commit")
	var again uint32
	require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&again))
	require.Equal(t, pid, again, "Abort after Commit took the connection out of the pool (it holds one)")

	rolled, ra, _, _ := beginAborter(t, b.store)
	require.NoError(t, rolled.Rollback(ctx))
	require.NoError(t, ra.Abort(ctx))

	// A unit that never began holds no connection: Abort just ends it.
	idle, err := b.store.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	ia, ok := idle.(feed.Aborter)
	require.True(t, ok, "a PostgreSQL unit is a feed.Aborter")
	require.NoError(t, ia.Abort(ctx))
	_, err = idle.Append(ctx, "order-1", events.NoStream, events.Event{Data: events.Raw{Type: "placed", Payload: json.RawMessage(`{}`)}})
	require.ErrorIs(t, err, events.ErrUnitEnded)

	requireStoreWorks(t, b)
}

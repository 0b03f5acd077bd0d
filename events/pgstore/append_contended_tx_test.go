package pgstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

// firstWriter is the transaction that appends first and again in
// TestTransactionAppendsAgainToAStreamThatTurnedContended: a caller's
// transaction with AppendTx, a unit with its Append, or a unit's
// transaction (TxFromContext) with AppendTx.
type firstWriter struct {
	name   string
	append func(stream string, expected events.ExpectedVersion, evs []events.Event) (events.AppendResult, error)
	pid    func() int32
	commit func() error
}

func newFirstWriter(t *testing.T, db *pgtest.DB, st *pgstore.Store, kind int) firstWriter {
	t.Helper()
	ctx := t.Context()
	if kind == 0 {
		tx, err := db.Pool.Begin(ctx)
		require.NoError(t, err)
		t.Cleanup(func() { _ = tx.Rollback(context.WithoutCancel(ctx)) })
		return firstWriter{
			name: "AppendTx",
			append: func(stream string, expected events.ExpectedVersion, evs []events.Event) (events.AppendResult, error) {
				return st.AppendTx(ctx, tx, stream, expected, evs...)
			},
			pid:    func() int32 { return backendPID(t, tx) },
			commit: func() error { return tx.Commit(ctx) },
		}
	}
	u, err := st.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = u.Rollback(context.WithoutCancel(ctx)) })
	uctx := u.Context(ctx)
	unitTx := func() pgx.Tx {
		tx, err := pgstore.TxFromContext(uctx)
		require.NoError(t, err)
		return tx
	}
	w := firstWriter{
		name: "a unit's Append",
		append: func(stream string, expected events.ExpectedVersion, evs []events.Event) (events.AppendResult, error) {
			return u.Append(uctx, stream, expected, evs...)
		},
		pid:    func() int32 { return backendPID(t, unitTx()) },
		commit: func() error { return u.Commit(ctx) },
	}
	if kind == 2 {
		w.name = "AppendTx on a unit's transaction"
		w.append = func(stream string, expected events.ExpectedVersion, evs []events.Event) (events.AppendResult, error) {
			return st.AppendTx(uctx, unitTx(), stream, expected, evs...)
		}
	}
	return w
}

func backendPID(t *testing.T, tx pgx.Tx) int32 {
	t.Helper()
	var pid int32
	require.NoError(t, tx.QueryRow(t.Context(), "SELECT pg_backend_pid()").Scan(&pid))
	return pid
}

// TestTransactionAppendsAgainToAStreamThatTurnedContended appends to a
// stream in a transaction (a caller's, or a unit's), lets the stream turn
// contended and a second transaction queue behind the first append, then
// appends to the stream again in the first transaction. Both must land, in
// order, with no deadlock: had the first transaction queued for the
// stream's lock on its second append, having taken none on its first, it
// would wait for the second transaction, which waits for its first
// append's version.
func TestTransactionAppendsAgainToAStreamThatTurnedContended(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	ctx := t.Context()
	st := openStore(t, db)
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 0))
	for round := range 6 {
		kind := round % 3
		first, again, other := 1+r.IntN(3), 1+r.IntN(3), 1+r.IntN(3)
		stream := fmt.Sprintf("order-turned%d", round)
		w := newFirstWriter(t, db, st, kind)
		msg := fmt.Sprintf("seed %d, round %d (%s)", seed, round, w.name)

		_, err := w.append(stream, events.NoStream, rawEvents(first))
		require.NoError(t, err, msg)
		pgstore.MarkContended(st, stream)
		// An append that is to wait (behind AppendTx's lock, or at the
		// unique index for a unit's first version) and then land must
		// expect what fits both the committed stream, empty, and the
		// stream once the first transaction committed: StreamExists, say,
		// fails at once (see the package doc).
		done := startAppend(ctx, db, st, stream, events.AnyVersion, rawEvents(other), true)
		awaitBlockedBy(t, db, w.pid(), msg)

		res, err := w.append(stream, events.AnyVersion, rawEvents(again))
		require.NoError(t, err, "the first transaction's second append, %s", msg)
		require.Equal(t, int64(first+1), res.FirstVersion, msg)
		require.NoError(t, w.commit(), msg)

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

// TestStreamLocksHeldByTransactions: AppendTx takes one advisory lock per
// stream it appends to and holds it until its transaction ends; a unit
// takes none for streams that are not contended, however many it appends
// to (each lock would hold a slot of PostgreSQL's lock table), and one for
// a contended stream.
func TestStreamLocksHeldByTransactions(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	st := openStore(t, db)
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 0))
	streams := 1 + r.IntN(20)
	for kind := range 3 {
		w := newFirstWriter(t, db, st, kind)
		for i := range streams {
			for range 1 + r.IntN(2) {
				_, err := w.append(fmt.Sprintf("order-locks%d-%d", kind, i), events.AnyVersion, rawEvents(1))
				require.NoError(t, err)
			}
		}
		want := 0
		if kind == 0 {
			want = streams
		}
		require.Equal(t, want, advisoryLocks(t, db, w.pid()), "%s over %d streams (seed %d)", w.name, streams, seed)
		if kind != 0 {
			contended := fmt.Sprintf("order-locks-hot%d", kind)
			pgstore.MarkContended(st, contended)
			_, err := w.append(contended, events.AnyVersion, rawEvents(1))
			require.NoError(t, err)
			require.Equal(t, 1, advisoryLocks(t, db, w.pid()), "%s, then a contended stream (seed %d)", w.name, seed)
		}
		require.NoError(t, w.commit())
	}
}

// TestUnitQueuesAgainAfterLosingARace: a unit whose earlier append to a
// stream found its events stored already holds none of the stream's
// versions, so when its next append to the stream loses a race (to a
// process of the previous release, which took no lock), it runs again
// queued on the stream's lock like any append to a contended stream.
func TestUnitQueuesAgainAfterLosingARace(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	ctx := t.Context()
	st := openStore(t, db)
	old := openStore(t, db)
	pgstore.SetUnqueuedInTx(old)
	const stream = "order-requeue"
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 0))
	stored := events.AssignIDs(rawEvents(1 + r.IntN(3)))
	_, err := st.Append(ctx, stream, events.NoStream, stored...)
	require.NoError(t, err)

	w := newFirstWriter(t, db, st, 1+r.IntN(2))
	res, err := w.append(stream, events.AnyVersion, stored)
	require.NoError(t, err)
	require.True(t, res.AlreadyStored, "%s: a retry of stored events", w.name)
	pid := w.pid()

	holder, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = holder.Rollback(context.WithoutCancel(ctx)) }()
	held := 1 + r.IntN(3)
	_, err = old.AppendTx(ctx, holder, stream, events.AnyVersion, rawEvents(held)...)
	require.NoError(t, err)

	type outcome struct {
		res events.AppendResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := w.append(stream, events.AnyVersion, rawEvents(1))
		done <- outcome{res, err}
	}()
	awaitLockWaiter(t, db, stream)
	require.NoError(t, holder.Commit(ctx))
	got := <-done
	require.NoError(t, got.err, "%s (seed %d)", w.name, seed)
	require.Equal(t, int64(len(stored)+held+1), got.res.FirstVersion)
	require.Equal(t, 1, advisoryLocks(t, db, pid), "%s ran again queued on the stream's lock (seed %d)", w.name, seed)
	require.NoError(t, w.commit())
	requireTokensFollowVersions(t, st, stream)
}

// advisoryLocks counts the advisory locks backend pid holds.
func advisoryLocks(t *testing.T, db *pgtest.DB, pid int32) int {
	t.Helper()
	var n int
	require.NoError(t, db.Pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1`, pid).Scan(&n))
	return n
}

// awaitBlockedBy waits until a session of the test's database waits for
// a lock that backend pid holds.
func awaitBlockedBy(t *testing.T, db *pgtest.DB, pid int32, msg string) {
	t.Helper()
	ctx := t.Context()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var blocked bool
		require.NoError(c, db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
WHERE datname = current_database() AND $1::int = ANY(pg_blocking_pids(pid)))`, pid).Scan(&blocked))
		assert.True(c, blocked, "nothing blocked by backend %d", pid)
	}, 10*time.Second, 5*time.Millisecond, "no append queued behind the transaction, %s", msg)
}

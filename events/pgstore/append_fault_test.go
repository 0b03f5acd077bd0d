package pgstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/faultproxy"
	"github.com/converge-es/converge/internal/pgtest"
)

// faultBundle is a store whose connections pass through a fault proxy,
// and a second store on the same schema that reads around it.
type faultBundle struct {
	store  *pgstore.Store // through the proxy
	direct *pgstore.Store
	proxy  *faultproxy.Proxy
	pool   *pgxpool.Pool // store's pool, through the proxy
}

// setupFaults builds the bundle; mods change the proxied pool's config.
func setupFaults(t *testing.T, retry pgstore.AppendRetry, mods ...func(*pgxpool.Config)) faultBundle {
	t.Helper()
	db := pgtest.New(t, nil)
	pcfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	proxy := faultproxy.New(t, net.JoinHostPort(pcfg.ConnConfig.Host, fmt.Sprint(pcfg.ConnConfig.Port)))
	pcfg.ConnConfig.Host, pcfg.ConnConfig.Port = proxy.Host(), proxy.Port()
	// In the clear, so the proxy can aim at one statement by its stream id.
	pcfg.ConnConfig.TLSConfig, pcfg.ConnConfig.Fallbacks = nil, nil
	pcfg.ConnConfig.RuntimeParams["search_path"] = db.Schema
	pcfg.MaxConns = 3
	for _, m := range mods {
		m(pcfg)
	}
	pool, err := pgxpool.NewWithConfig(t.Context(), pcfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)

	ctx := context.Background()
	store, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: db.Schema, DisableListen: true, AppendRetry: retry})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	direct, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, DisableListen: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = direct.Close() })
	return faultBundle{store: store, direct: direct, proxy: proxy, pool: pool}
}

// noRetry turns Append's own retries off, to see what a single attempt
// reports.
var noRetry = pgstore.AppendRetry{MaxAttempts: 1}

func rawEvent(n int) events.Event {
	return events.Event{Data: events.Raw{Type: "test.fault", Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))}}
}

// requireStream checks that stream holds exactly the events of res once,
// as res says.
func requireStream(t *testing.T, st *pgstore.Store, stream string, version int64, res events.AppendResult) {
	t.Helper()
	got, err := st.ReadStream(t.Context(), stream, 1, 0)
	require.NoError(t, err)
	require.Len(t, got, int(version), "stream %q holds every event exactly once", stream)
	tail := got[res.FirstVersion-1 : res.LastVersion]
	for i, env := range tail {
		require.Equal(t, res.EventIDs[i], env.ID)
		require.Equal(t, res.Tokens[i], env.Token)
	}
}

// TestAppendReplyLost cuts the connection after PostgreSQL committed an
// append and before its reply reached the client.
func TestAppendReplyLost(t *testing.T) {
	t.Parallel()

	t.Run("RetriedToOneSuccess", func(t *testing.T) {
		t.Parallel()
		b := setupFaults(t, pgstore.AppendRetry{})
		stream := "order-" + uuid.NewString()
		fired := b.proxy.Inject(faultproxy.Fault{Match: faultproxy.Contains(stream)})
		res, err := b.store.Append(t.Context(), stream, events.NoStream, rawEvent(1), rawEvent(2))
		require.NoError(t, err, "Append resolves the lost reply by retrying with the same ids")
		requireFired(t, fired)
		require.False(t, res.AlreadyStored, "this call stored them, in its first attempt")
		require.Equal(t, int64(1), res.FirstVersion)
		require.Equal(t, int64(2), res.LastVersion)
		requireStream(t, b.direct, stream, 2, res)
	})

	t.Run("UnknownOutcomeThenCallerRetries", func(t *testing.T) {
		t.Parallel()
		b := setupFaults(t, noRetry)
		stream := "order-" + uuid.NewString()
		_, err := b.direct.Append(t.Context(), stream, events.NoStream, rawEvent(0))
		require.NoError(t, err)

		evs := []events.Event{rawEvent(1), rawEvent(2)} // ids left to the store
		fired := b.proxy.Inject(faultproxy.Fault{Match: faultproxy.Contains(stream)})
		_, err = b.store.Append(t.Context(), stream, events.Exactly(1), evs...)
		requireFired(t, fired)
		require.ErrorIs(t, err, events.ErrOutcomeUnknown)
		require.ErrorIs(t, err, events.ErrUnavailable, "a lost connection is a transient fault")
		require.ErrorContains(t, err, "append the same events again")
		var unknown *events.OutcomeUnknownError
		require.ErrorAs(t, err, &unknown)
		require.Len(t, unknown.EventIDs, 2)

		// The caller retries with the ids the error names: first with the
		// same Exactly, then with AnyVersion. Neither is a conflict, and
		// neither writes.
		for i := range evs {
			evs[i].ID = unknown.EventIDs[i]
		}
		first, err := b.store.Append(t.Context(), stream, events.Exactly(1), evs...)
		require.NoError(t, err, "the retry of a committed append with its Exactly(n) is not a conflict")
		require.Equal(t, unknown.EventIDs, first.EventIDs)
		require.Equal(t, int64(2), first.FirstVersion)
		require.True(t, first.AlreadyStored, "the first attempt stored them")
		again, err := b.store.Append(t.Context(), stream, events.AnyVersion, evs...)
		require.NoError(t, err)
		require.Equal(t, first, again)
		requireStream(t, b.direct, stream, 3, first)
	})
}

// TestAppendRequestLost drops the append before PostgreSQL sees it: the
// client cannot tell this from a lost reply, and retrying stores the
// events once.
func TestAppendRequestLost(t *testing.T) {
	t.Parallel()

	t.Run("RetriedToOneSuccess", func(t *testing.T) {
		t.Parallel()
		b := setupFaults(t, pgstore.AppendRetry{})
		stream := "order-" + uuid.NewString()
		fired := b.proxy.Inject(faultproxy.Fault{Match: faultproxy.Contains(stream), DropRequest: true})
		res, err := b.store.Append(t.Context(), stream, events.AnyVersion, rawEvent(1))
		require.NoError(t, err)
		requireFired(t, fired)
		requireStream(t, b.direct, stream, 1, res)
	})

	t.Run("UnknownOutcomeThenCallerRetries", func(t *testing.T) {
		t.Parallel()
		b := setupFaults(t, noRetry)
		stream := "order-" + uuid.NewString()
		evs := events.AssignIDs([]events.Event{rawEvent(1)})
		fired := b.proxy.Inject(faultproxy.Fault{Match: faultproxy.Contains(stream), DropRequest: true})
		_, err := b.store.Append(t.Context(), stream, events.NoStream, evs...)
		requireFired(t, fired)
		require.ErrorIs(t, err, events.ErrOutcomeUnknown)
		got, err := b.direct.ReadStream(t.Context(), stream, 1, 0)
		require.NoError(t, err)
		require.Empty(t, got, "the request never reached the server")

		res, err := b.store.Append(t.Context(), stream, events.NoStream, evs...)
		require.NoError(t, err)
		require.Equal(t, evs[0].ID, res.EventIDs[0])
		requireStream(t, b.direct, stream, 1, res)
	})
}

// TestAppendContextCancelledMidCommit cancels an append's context while
// PostgreSQL has committed it and the reply is held back: the error must
// say the outcome is unknown, and a retry must find the events.
func TestAppendContextCancelledMidCommit(t *testing.T) {
	t.Parallel()
	b := setupFaults(t, pgstore.AppendRetry{})
	stream := "order-" + uuid.NewString()
	release := make(chan struct{})
	defer close(release)
	fired := b.proxy.Inject(faultproxy.Fault{Match: faultproxy.Contains(stream), Hold: release})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	evs := events.AssignIDs([]events.Event{rawEvent(1)})
	errc := make(chan error, 1)
	go func() {
		_, err := b.store.Append(ctx, stream, events.NoStream, evs...)
		errc <- err
	}()
	requireFired(t, fired)
	cancel()
	err := <-errc
	require.ErrorIs(t, err, events.ErrOutcomeUnknown)
	require.ErrorIs(t, err, context.Canceled)

	res, err := b.store.Append(t.Context(), stream, events.NoStream, evs...)
	require.NoError(t, err, "the retry finds the committed events")
	requireStream(t, b.direct, stream, 1, res)
}

// TestAppendBackendTerminated terminates the backend running an append
// while it waits for a lock, the way a server shutdown does: PostgreSQL
// answers 57P01, so nothing was written and the error is only transient.
func TestAppendBackendTerminated(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		retry pgstore.AppendRetry
	}{{"Retried", pgstore.AppendRetry{}}, {"NotRetried", noRetry}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			db := pgtest.New(t, nil)
			ctx := t.Context()
			st, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, DisableListen: true, AppendRetry: tc.retry})
			require.NoError(t, err)
			defer st.Close()
			stream := "order-" + uuid.NewString()
			_, err = st.Append(ctx, stream, events.NoStream, rawEvent(0))
			require.NoError(t, err)

			// Hold version 2 of the stream, uncommitted, so the append
			// waits for this transaction to end.
			tx, err := db.Pool.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = tx.Rollback(context.Background()) }()
			_, err = tx.Exec(ctx, `INSERT INTO events (sort_key, event_id, stream_id, version, type, payload, category)
VALUES (0, gen_random_uuid(), $1, 2, 'held', '{}', 'order')`, stream)
			require.NoError(t, err)

			type result struct {
				res events.AppendResult
				err error
			}
			done := make(chan result, 1)
			go func() {
				res, err := st.Append(ctx, stream, events.Exactly(1), rawEvent(1))
				done <- result{res, err}
			}()
			pid := awaitLockWaiter(t, db, stream)
			var terminated bool
			require.NoError(t, db.Pool.QueryRow(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&terminated))
			require.True(t, terminated)
			if tc.retry.MaxAttempts == 1 {
				r := <-done
				require.ErrorIs(t, r.err, events.ErrUnavailable)
				require.NotErrorIs(t, r.err, events.ErrOutcomeUnknown, "PostgreSQL answered: nothing was written")
				require.NoError(t, tx.Rollback(ctx))
				v, err := st.StreamVersion(ctx, stream)
				require.NoError(t, err)
				require.Equal(t, int64(1), v)
				return
			}
			// The retry waits on the lock again; let it through.
			awaitLockWaiter(t, db, stream)
			require.NoError(t, tx.Rollback(ctx))
			r := <-done
			require.NoError(t, r.err)
			require.Equal(t, int64(2), r.res.FirstVersion)
			requireStream(t, st, stream, 2, r.res)
		})
	}
}

// awaitLockWaiter returns the pid of a backend that waits for a lock in
// this test's schema: a statement naming the schema, or the advisory lock
// of stream in it (whose statement names neither).
func awaitLockWaiter(t *testing.T, db *pgtest.DB, stream string) int32 {
	t.Helper()
	var pid int32
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		err := db.Pool.QueryRow(t.Context(), `SELECT a.pid FROM pg_stat_activity a
WHERE a.wait_event_type = 'Lock' AND a.datname = current_database() AND (a.query LIKE '%' || $1 || '%'
  OR EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted AND l.locktype = 'advisory'
    AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended($2, 0)))
LIMIT 1`, db.Schema, db.Schema+"."+stream).Scan(&pid)
		require.NoError(c, err)
	}, 10*time.Second, 5*time.Millisecond)
	return pid
}

func requireFired(t *testing.T, fired <-chan struct{}) {
	t.Helper()
	select {
	case <-fired:
	case <-time.After(10 * time.Second):
		t.Fatal("the fault never fired: the statement did not go through the proxy")
	}
}

// TestAppendRetriesRunOut loses the reply of the first attempt (which
// commits) and the requests of every retry: Append must report the outcome
// as unknown, not as the last attempt's plain unavailability, and a later
// retry must find the committed events.
func TestAppendRetriesRunOut(t *testing.T) {
	t.Parallel()
	b := setupFaults(t, pgstore.AppendRetry{MaxAttempts: 3, InitialBackoff: time.Millisecond})
	stream := "order-" + uuid.NewString()
	cut := b.proxy.Inject(faultproxy.Fault{Match: faultproxy.Contains(stream)})
	var dropped []<-chan struct{}
	for range 2 {
		dropped = append(dropped, b.proxy.Inject(faultproxy.Fault{Match: faultproxy.Contains(stream), DropRequest: true}))
	}
	evs := events.AssignIDs([]events.Event{rawEvent(1), rawEvent(2)})
	_, err := b.store.Append(t.Context(), stream, events.NoStream, evs...)
	requireFired(t, cut)
	for _, d := range dropped {
		requireFired(t, d)
	}
	require.ErrorIs(t, err, events.ErrOutcomeUnknown)
	require.ErrorContains(t, err, "after 3 attempts")

	res, err := b.store.Append(t.Context(), stream, events.NoStream, evs...)
	require.NoError(t, err)
	require.Equal(t, evs[0].ID, res.EventIDs[0])
	requireStream(t, b.direct, stream, 2, res)
}

// TestAppendTxRerun reruns a committed transaction whose commit the caller
// could not confirm: its AppendTx finds the events, returns the original
// result, and leaves the transaction usable, so the rerun commits its other
// work without storing the events twice.
func TestAppendTxRerun(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	ctx := t.Context()
	st := openStore(t, db)
	_, err := db.Pool.Exec(ctx, "CREATE TABLE outbox (n int)")
	require.NoError(t, err)

	evs := events.AssignIDs([]events.Event{rawEvent(1), rawEvent(2)})
	run := func() events.AppendResult {
		tx, err := db.Pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(context.Background()) }()
		res, err := st.AppendTx(ctx, tx, "order-1", events.NoStream, evs...)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, "INSERT INTO outbox VALUES (1)")
		require.NoError(t, err, "the transaction is still usable")
		require.NoError(t, tx.Commit(ctx))
		return res
	}
	first := run()
	require.False(t, first.AlreadyStored)
	again := run()
	require.True(t, again.AlreadyStored)
	again.AlreadyStored = false
	require.Equal(t, first, again)
	requireStream(t, st, "order-1", 2, first)
}

// TestAppendTxRerunAnyVersion reruns transactions whose AppendTx states no
// version, or only that the stream exists. Inside a transaction the append
// checks the ids before moving the head: the first append creates the
// stream (the move finds none), the second moves it on, and every rerun of
// either finds its events, writes nothing and leaves the transaction
// usable.
func TestAppendTxRerunAnyVersion(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	ctx := t.Context()
	st := openStore(t, db)
	_, err := db.Pool.Exec(ctx, "CREATE TABLE outbox (n int)")
	require.NoError(t, err)

	run := func(expected events.ExpectedVersion, evs []events.Event) events.AppendResult {
		tx, err := db.Pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(context.Background()) }()
		res, err := st.AppendTx(ctx, tx, "order-1", expected, evs...)
		require.NoError(t, err, "append with %s", expected)
		_, err = tx.Exec(ctx, "INSERT INTO outbox VALUES (1)")
		require.NoError(t, err, "the transaction is still usable")
		require.NoError(t, tx.Commit(ctx))
		return res
	}
	creating := events.AssignIDs([]events.Event{rawEvent(1), rawEvent(2)})
	moving := events.AssignIDs([]events.Event{rawEvent(3)})
	first := run(events.AnyVersion, creating)
	require.Equal(t, int64(1), first.FirstVersion)
	second := run(events.AnyVersion, moving)
	require.Equal(t, int64(3), second.FirstVersion)
	// StreamExists could not have created the stream, so only the second
	// append is rerun with it.
	for _, rerun := range []struct {
		expected events.ExpectedVersion
		evs      []events.Event
		want     events.AppendResult
	}{
		{events.AnyVersion, creating, first},
		{events.AnyVersion, moving, second},
		{events.StreamExists, moving, second},
	} {
		again := run(rerun.expected, rerun.evs)
		require.True(t, again.AlreadyStored)
		again.AlreadyStored = false
		require.Equal(t, rerun.want, again)
	}
	requireStream(t, st, "order-1", 3, first)
	requireStream(t, st, "order-1", 3, second)
	var outbox int
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT count(*) FROM outbox").Scan(&outbox))
	require.Equal(t, 5, outbox, "every transaction committed")
}

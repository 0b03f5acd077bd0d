package pgstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

// randomKey returns a key of 1 to 40 runes drawn from ASCII, Latin-1 and
// CJK, so multi-byte UTF-8 is hashed too.
func randomKey(r *rand.Rand) string {
	var b strings.Builder
	for range 1 + r.IntN(40) {
		switch r.IntN(3) {
		case 0:
			b.WriteRune(rune(0x21 + r.IntN(0x5e)))
		case 1:
			b.WriteRune(rune(0xa1 + r.IntN(0x5e)))
		default:
			b.WriteRune(rune(0x4e00 + r.IntN(0x5000)))
		}
	}
	return b.String()
}

// The SQL formula in feed.PartitionOf's doc computes what PartitionOf
// computes, for any key and count.
func TestPartitionFormulaMatchesGo(t *testing.T) {
	t.Parallel()
	b := setup(t, events.NewRegistry(), 2)
	r := rand.New(rand.NewPCG(1, 2))
	keys := make([]string, 2000)
	for i := range keys {
		keys[i] = randomKey(r)
	}
	for _, count := range []int{2, 3, 7, 64, 1000, feed.MaxPartitions} {
		rows, err := b.db.Pool.Query(t.Context(),
			`SELECT (('x' || substr(md5(k), 1, 8))::bit(32)::int & 2147483647) % $2 FROM unnest($1::text[]) WITH ORDINALITY AS u(k, i) ORDER BY i`,
			keys, count)
		require.NoError(t, err)
		got, err := pgx.CollectRows(rows, pgx.RowTo[int])
		require.NoError(t, err)
		for i, k := range keys {
			require.Equal(t, feed.PartitionOf(k, count), got[i], "key %q, count %d", k, count)
		}
	}
}

// The store's partition filter puts random streams where PartitionOf says,
// every event in exactly one partition.
func TestPartitionFilterMatchesGo(t *testing.T) {
	t.Parallel()
	b := setup(t, events.NewRegistry(), 4)
	ctx := t.Context()
	r := rand.New(rand.NewPCG(3, 4))
	const n = 60
	for i := range n {
		ev := events.Event{Data: events.Raw{Type: "t", Payload: json.RawMessage(`{}`)}}
		if i%2 == 0 {
			ev.Metadata.CorrelationID = randomKey(r)
		}
		_, err := b.store.Append(ctx, fmt.Sprintf("%s-%d", randomKey(r), i), events.NoStream, ev)
		require.NoError(t, err)
	}
	require.Len(t, readAtLeast(t, b.store, n), n)
	for _, key := range []feed.PartitionKey{feed.ByStream, feed.ByCorrelation} {
		const count = 5
		seen := 0
		for index := range count {
			batch, err := b.store.ReadFeed(ctx, events.Token{}, feed.Filter{Partition: feed.Partition{Index: index, Count: count, Key: key}}, 0)
			require.NoError(t, err)
			for _, env := range batch.Events {
				require.Equal(t, index, feed.PartitionOf(feed.KeyOf(key, env), count), "key %s: %q", key, feed.KeyOf(key, env))
			}
			seen += len(batch.Events)
		}
		require.Equal(t, n, seen, "key %s: every event in exactly one partition", key)
	}
}

// A unit takes a transaction id only at its first write: a handler that
// reads (or waits) before writing holds nothing back.
func TestUnitTakesAnXidOnlyWhenItWrites(t *testing.T) {
	t.Parallel()
	b := setup(t, events.NewRegistry(), 4)
	ctx := t.Context()
	u, err := b.store.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	defer func() { require.NoError(t, u.Rollback(ctx)) }()
	uctx := u.Context(ctx)
	_, err = u.StreamVersion(uctx, "a-1")
	require.NoError(t, err)
	_, _, err = u.Rows().Get(uctx, "ns", "t", "k", feed.LockNone)
	require.NoError(t, err)

	tx, err := pgstore.TxFromContext(uctx)
	require.NoError(t, err)
	var pid int32
	require.NoError(t, tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
	// Asked from another connection, as a monitor (HorizonAge) sees it.
	xid := func() *string {
		var x *string
		require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT backend_xid::text FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&x))
		return x
	}
	require.Nil(t, xid(), "a begun unit that has not written holds no transaction id")
	_, err = u.Append(uctx, "a-1", events.NoStream, events.Event{Data: events.Raw{Type: "t", Payload: json.RawMessage(`{}`)}})
	require.NoError(t, err)
	require.NotNil(t, xid(), "the first append takes one")

	again, err := pgstore.TxFromContext(uctx)
	require.NoError(t, err)
	require.Same(t, tx, again, "the unit has one transaction")
	_, err = pgstore.TxFromContext(ctx)
	require.ErrorIs(t, err, pgstore.ErrNoUnit)
}

// Category filters compare plain strings: over random stream ids and
// categories made of '-', '%', '_' and letters, the store returns exactly
// the events feed.InCategory accepts.
func TestCategoryFilterMatchesGo(t *testing.T) {
	t.Parallel()
	b := setup(t, events.NewRegistry(), 4)
	ctx := t.Context()
	r := rand.New(rand.NewPCG(5, 6))
	const alphabet = "ab-%_"
	word := func() string {
		w := make([]byte, 1+r.IntN(4))
		for i := range w {
			w[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(w)
	}
	const n = 80
	for range n {
		_, err := b.store.Append(ctx, word(), events.AnyVersion, events.Event{Data: events.Raw{Type: "t", Payload: json.RawMessage(`{}`)}})
		require.NoError(t, err)
	}
	all := readAtLeast(t, b.store, n)
	for range 40 {
		cats := []string{word()}
		if r.IntN(2) == 0 {
			cats = append(cats, word())
		}
		f := feed.Filter{Categories: cats}
		var want []string
		for _, env := range all {
			if f.Match(env) {
				want = append(want, env.ID)
			}
		}
		batch, err := b.store.ReadFeed(ctx, events.Token{}, f, 0)
		require.NoError(t, err)
		got := make([]string, len(batch.Events))
		for i, env := range batch.Events {
			got[i] = env.ID
		}
		require.Equal(t, len(want), len(got), "categories %q", cats)
		if len(want) > 0 {
			require.Equal(t, want, got, "categories %q", cats)
		}
	}
}

// On PostgreSQL a second unit reading a row with LockUpdate waits for the
// unit holding it, then reads what that unit committed (memory fails the
// later commit with ErrConflict instead; the shared suite checks that no
// update is lost either way).
func TestLockedReadWaitsOnPostgres(t *testing.T) {
	t.Parallel()
	b := setup(t, events.NewRegistry(), 4)
	ctx := t.Context()
	require.NoError(t, b.store.Rows().Put(ctx, "ns", "t", "k", json.RawMessage(`1`), events.Token{}))
	first, err := b.store.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	_, _, err = first.Rows().Get(ctx, "ns", "t", "k", feed.LockUpdate)
	require.NoError(t, err)

	type read struct {
		row feed.Row
		err error
	}
	done := make(chan read, 1)
	second, err := b.store.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	defer func() { require.NoError(t, second.Rollback(ctx)) }()
	go func() {
		row, _, err := second.Rows().Get(ctx, "ns", "t", "k", feed.LockUpdate)
		done <- read{row, err}
	}()
	// The waiting statement shows up as a lock wait: the signal that the
	// second unit is blocked, rather than a sleep.
	require.Eventually(t, func() bool {
		var waiting int
		err := b.db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%' AND query LIKE '%' || $1 || '%'`, b.db.Schema).Scan(&waiting)
		return err == nil && waiting == 1
	}, 10*time.Second, 2*time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("the second locked read must wait, got %+v", r)
	default:
	}
	require.NoError(t, first.Rows().Put(ctx, "ns", "t", "k", json.RawMessage(`2`), events.Token{}))
	require.NoError(t, first.Commit(ctx))
	r := <-done
	require.NoError(t, r.err)
	require.JSONEq(t, `2`, string(r.row.Value), "the waiting read sees the committed write")
}

// TestTxFromContextSeesHeldWritesAndEndsWithTheUnit: SQL on the handed-out
// transaction sees the rows the unit wrote before the call; Commit and
// Rollback on it are refused; after the unit's commit every call fails with
// pgx.ErrTxClosed (its connection is back in the pool).
func TestTxFromContextSeesHeldWritesAndEndsWithTheUnit(t *testing.T) {
	t.Parallel()
	b := setup(t, events.NewRegistry(), 4)
	ctx := t.Context()
	u, err := b.store.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	uctx := u.Context(ctx)
	require.NoError(t, u.Rows().Put(uctx, "ns", "t", "held", json.RawMessage(`{"n": 1}`), events.MakeToken(1, 1)))

	tx, err := pgstore.TxFromContext(uctx)
	require.NoError(t, err)
	var n int
	require.NoError(t, tx.QueryRow(ctx, `SELECT (value->>'n')::int FROM rows WHERE namespace = 'ns' AND tbl = 't' AND key = 'held'`).Scan(&n))
	require.Equal(t, 1, n, "the held write was sent before the transaction was handed out")
	require.Error(t, tx.Commit(ctx), "the unit commits")
	require.Error(t, tx.Rollback(ctx), "the unit rolls back")

	require.NoError(t, u.Commit(ctx))
	_, err = tx.Exec(ctx, `SELECT 1`)
	require.ErrorIs(t, err, pgx.ErrTxClosed)
	require.ErrorIs(t, tx.QueryRow(ctx, `SELECT 1`).Scan(&n), pgx.ErrTxClosed)
	rs, err := tx.Query(ctx, `SELECT 1`)
	if rs != nil {
		rs.Close()
	}
	require.ErrorIs(t, err, pgx.ErrTxClosed)
	require.ErrorIs(t, tx.SendBatch(ctx, &pgx.Batch{QueuedQueries: []*pgx.QueuedQuery{{SQL: "SELECT 1"}}}).Close(), pgx.ErrTxClosed)
	_, err = tx.Begin(ctx)
	require.ErrorIs(t, err, pgx.ErrTxClosed)

	row, ok, err := b.store.Rows().Get(ctx, "ns", "t", "held", feed.LockNone)
	require.NoError(t, err)
	require.True(t, ok)
	require.JSONEq(t, `{"n": 1}`, string(row.Value))
}

// lockingHook takes a row another transaction holds, under a short
// lock_timeout, so its locked read fails with a statement error that the
// append's savepoint undoes.
type lockingHook struct{}

func (lockingHook) Wants([]string) bool { return true }

func (lockingHook) Before(ctx context.Context, u feed.Unit, _ string, evs []events.Event) ([]events.Event, error) {
	tx, err := pgstore.TxFromContext(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '50ms'`); err != nil {
		return nil, err
	}
	if err := u.Rows().Put(ctx, "ns", "t", "locked", json.RawMessage(`1`), events.MakeToken(1, 1)); err != nil {
		return nil, err
	}
	// The read is of a held row, so the held write travels with it, and
	// both fail with it.
	if _, _, err := u.Rows().Get(ctx, "ns", "t", "locked", feed.LockUpdate); err != nil {
		return nil, err
	}
	return evs, nil
}

func (lockingHook) After(context.Context, feed.Unit, []events.Envelope) error { return nil }

// TestHookStatementFailureLeavesUnitUsable: a statement of an append hook
// that fails (a lock timeout) is undone with the hook by the append's
// savepoint, so the unit commits its other writes afterwards; the hook's
// held write, sent with the failed statement, is gone.
//
// (The hook writes the row it then locks: a locked read sends the held
// writes only when its row is one of them.)
func TestHookStatementFailureLeavesUnitUsable(t *testing.T) {
	t.Parallel()
	b := setup(t, events.NewRegistry(), 4)
	ctx := t.Context()
	require.NoError(t, b.store.Rows().Put(ctx, "ns", "t", "locked", json.RawMessage(`0`), events.MakeToken(1, 1)))
	holder, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = holder.Rollback(context.WithoutCancel(ctx)) }()
	_, err = holder.Exec(ctx, `SELECT 1 FROM rows WHERE namespace = 'ns' AND tbl = 't' AND key = 'locked' FOR UPDATE`)
	require.NoError(t, err)
	defer b.store.AddAppendHook(lockingHook{})()

	u, err := b.store.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	uctx := u.Context(ctx)
	require.NoError(t, u.Rows().Put(uctx, "ns", "t", "before", json.RawMessage(`2`), events.MakeToken(2, 2)))
	_, err = u.Append(uctx, "a-1", events.NoStream, events.Event{Data: events.Raw{Type: "t", Payload: json.RawMessage(`{}`)}})
	require.ErrorContains(t, err, "lock timeout")
	require.NoError(t, u.Rows().Put(uctx, "ns", "t", "after", json.RawMessage(`3`), events.MakeToken(3, 3)))
	require.NoError(t, u.Commit(ctx), "the failed statement was undone with the hook")

	for key, want := range map[string]string{"before": "2", "after": "3", "locked": "0"} {
		row, ok, err := b.store.Rows().Get(ctx, "ns", "t", key, feed.LockNone)
		require.NoError(t, err)
		require.True(t, ok, key)
		require.Equal(t, want, string(row.Value), "%s: the hook's write went with its savepoint", key)
	}
	v, err := b.store.StreamVersion(ctx, "a-1")
	require.NoError(t, err)
	require.Zero(t, v, "the append was undone")
}

// TestCallFailingBeforeTheServerKeepsHeldWrites: a call that fails before
// reaching PostgreSQL (its context is cancelled while it waits for a
// connection, here the unit's first) sends nothing, so the unit's held
// writes stay held: a handler that carries on commits them with its
// checkpoint, as on the in-memory store.
func TestCallFailingBeforeTheServerKeepsHeldWrites(t *testing.T) {
	t.Parallel()
	b := setup(t, events.NewRegistry(), 4)
	ctx := t.Context()
	cps := b.store.Checkpoints()
	lease, err := cps.Acquire(ctx, "c", "owner", time.Minute)
	require.NoError(t, err)

	u, err := cps.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, u.Rows().Put(ctx, "ns", "t", "held", json.RawMessage(`1`), events.MakeToken(2, 2)))
	gone, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = u.Rows().Get(gone, "ns", "t", "held", feed.LockUpdate)
	require.ErrorIs(t, err, context.Canceled) // and the handler carries on
	require.NoError(t, u.Commit(ctx, feed.Move{Lease: lease, Position: events.MakeToken(2, 2)}))
	row, ok, err := b.store.Rows().Get(ctx, "ns", "t", "held", feed.LockNone)
	require.NoError(t, err)
	require.True(t, ok, "the held write was kept and committed")
	require.JSONEq(t, `1`, string(row.Value))
	pos, err := cps.Position(ctx, "c")
	require.NoError(t, err)
	require.Equal(t, events.MakeToken(2, 2), pos, "the checkpoint moved with the writes")
}

// TestLockedReadSendsHeldWritesOnlyForItsRow: a locked Get of a row the
// unit has not written, or a List of a range it has not written, leaves
// the unit's held writes held (the rows they will change stay unlocked
// until commit), while a List of a written range sends them first and
// reads the unit's own write, as a locked Get of a held row does. Row locks, seen
// from another transaction with NOWAIT, show which writes were sent.
func TestLockedReadSendsHeldWritesOnlyForItsRow(t *testing.T) {
	t.Parallel()
	b := setup(t, events.NewRegistry(), 4)
	ctx := t.Context()
	for _, k := range []string{"written", "read"} {
		require.NoError(t, b.store.Rows().Put(ctx, "ns", "t", k, json.RawMessage(`0`), events.MakeToken(1, 1)))
	}
	locked := func(key string) bool {
		tx, err := b.db.Pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(ctx) }()
		_, err = tx.Exec(ctx, `SELECT 1 FROM rows WHERE namespace = 'ns' AND tbl = 't' AND key = $1 FOR UPDATE NOWAIT`, key)
		if err == nil {
			return false
		}
		require.ErrorContains(t, err, "could not obtain lock")
		return true
	}

	u, err := b.store.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	// A failed check must not leave the unit's locks blocking the clean-up.
	t.Cleanup(func() { _ = u.Rollback(context.Background()) })
	require.NoError(t, u.Rows().Put(ctx, "ns", "t", "written", json.RawMessage(`1`), events.MakeToken(2, 2)))
	row, ok, err := u.Rows().Get(ctx, "ns", "t", "read", feed.LockUpdate)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "0", string(row.Value))
	require.True(t, locked("read"), "the locked read holds its row")
	require.False(t, locked("written"), "the held write was not sent with a read of another row")

	// A List of another table (or of keys the unit has not written)
	// leaves them held too; one of the written range sends them.
	_, err = u.Rows().List(ctx, "ns", "other", feed.RowQuery{})
	require.NoError(t, err)
	_, err = u.Rows().List(ctx, "ns", "t", feed.RowQuery{Prefix: "read"})
	require.NoError(t, err)
	require.False(t, locked("written"), "the held write was not sent with a List elsewhere")
	listed, err := u.Rows().List(ctx, "ns", "t", feed.RowQuery{Prefix: "writ"})
	require.NoError(t, err)
	require.Len(t, listed, 1)
	require.Equal(t, "1", string(listed[0].Value), "a List of the written range sees the unit's write")
	require.True(t, locked("written"), "the held write was sent with the List of its range")

	row, ok, err = u.Rows().Get(ctx, "ns", "t", "written", feed.LockUpdate)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "1", string(row.Value), "a locked read of a held row sees the unit's write")
	require.NoError(t, u.Commit(ctx))

	row, ok, err = b.store.Rows().Get(ctx, "ns", "t", "written", feed.LockNone)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "1", string(row.Value))
}

// TestPrefetchedRowsStopAnsweringOnceTheTransactionIsHandedOut: SQL on
// TxFromContext's transaction may change prefetched rows, so after the
// hand-out a Get reads the table again, locked or not, and sees the change.
func TestPrefetchedRowsStopAnsweringOnceTheTransactionIsHandedOut(t *testing.T) {
	t.Parallel()
	b := setup(t, events.NewRegistry(), 4)
	ctx := t.Context()
	require.NoError(t, b.store.Rows().Put(ctx, "ns", "t", "k", json.RawMessage(`{"n": 1}`), events.Token{}))
	u, err := b.store.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = u.Rollback(context.WithoutCancel(ctx)) }()
	uctx := u.Context(ctx)
	in := u.Rows()
	require.NoError(t, in.Prefetch(uctx, feed.LockUpdate, feed.RowAddress{Namespace: "ns", Table: "t", Key: "k"}, feed.RowAddress{Namespace: "ns", Table: "t", Key: "new"}))

	tx, err := pgstore.TxFromContext(uctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `UPDATE rows SET value = '{"n": 2}' WHERE namespace = 'ns' AND tbl = 't' AND key = 'k'`)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `INSERT INTO rows (namespace, tbl, key, value, major, minor) VALUES ('ns', 't', 'new', '{"n": 3}', 0, 0)`)
	require.NoError(t, err)
	for _, lock := range []feed.Lock{feed.LockNone, feed.LockUpdate} {
		row, ok, err := in.Get(uctx, "ns", "t", "k", lock)
		require.NoError(t, err)
		require.True(t, ok)
		require.JSONEq(t, `{"n": 2}`, string(row.Value), "lock %d: the SQL's update, not the prefetched value", lock)
		row, ok, err = in.Get(uctx, "ns", "t", "new", lock)
		require.NoError(t, err)
		require.True(t, ok, "lock %d: the SQL's insert, not the prefetched absence", lock)
		require.JSONEq(t, `{"n": 3}`, string(row.Value))
	}
}

// TestPrefetchWithoutALockBeginsNothing: like a Get without a lock, a
// Prefetch without one reads on the pool while the unit has not begun its
// transaction (a gate reads so at the head of a unit, where nothing may
// hold a connection or a transaction yet). On a pool of one connection a
// begun unit would hold it, and the store's own read below would wait.
func TestPrefetchWithoutALockBeginsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, events.NewRegistry(), 1)
	ctx := t.Context()
	require.NoError(t, b.store.Rows().Put(ctx, "ns", "t", "k", json.RawMessage(`1`), events.Token{}))
	u, err := b.store.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = u.Rollback(context.WithoutCancel(ctx)) }()
	require.NoError(t, u.Rows().Prefetch(u.Context(ctx), feed.LockNone, feed.RowAddress{Namespace: "ns", Table: "t", Key: "k"}))
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, ok, err := b.store.Rows().Get(rctx, "ns", "t", "k", feed.LockNone)
	require.NoError(t, err, "the pool's one connection is free")
	require.True(t, ok)
}

// failingAfterHook fails every append it runs in, after the events are
// stored: the append's savepoint rolls back.
type failingAfterHook struct{}

func (failingAfterHook) Wants([]string) bool { return true }

func (failingAfterHook) Before(_ context.Context, _ feed.Unit, _ string, evs []events.Event) ([]events.Event, error) {
	return evs, nil
}

func (failingAfterHook) After(context.Context, feed.Unit, []events.Envelope) error {
	return errors.New("pgstore test: the hook refuses")
}

// TestPrefetchedRowsStopAnsweringAfterAHookFails: an append hook's failure
// rolls its savepoint back, and the locks taken under it with it; the unit
// cannot tell which, so its prefetched rows stop answering and the next
// locked Get reads the table again.
func TestPrefetchedRowsStopAnsweringAfterAHookFails(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t, nil)
	var reads atomic.Int64
	pool := db.Traced(t, func(sql string, args []any) {
		if strings.HasPrefix(sql, "SELECT value, major, minor") && len(args) > 2 && args[2] == "k" {
			reads.Add(1)
		}
	})
	st, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: db.Schema, Registry: events.NewRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	require.NoError(t, st.Rows().Put(ctx, "ns", "t", "k", json.RawMessage(`1`), events.Token{}))
	defer st.AddAppendHook(failingAfterHook{})()

	u, err := st.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = u.Rollback(context.WithoutCancel(ctx)) }()
	uctx := u.Context(ctx)
	require.NoError(t, u.Rows().Prefetch(uctx, feed.LockUpdate, feed.RowAddress{Namespace: "ns", Table: "t", Key: "k"}))
	_, _, err = u.Rows().Get(uctx, "ns", "t", "k", feed.LockUpdate)
	require.NoError(t, err)
	require.Zero(t, reads.Load(), "answered from the Prefetch")
	_, err = u.Append(uctx, "a-1", events.NoStream, events.Event{Data: events.Raw{Type: "t", Payload: json.RawMessage(`{}`)}})
	require.ErrorContains(t, err, "the hook refuses")
	row, ok, err := u.Rows().Get(uctx, "ns", "t", "k", feed.LockUpdate)
	require.NoError(t, err)
	require.True(t, ok)
	require.JSONEq(t, `1`, string(row.Value))
	require.Equal(t, int64(1), reads.Load(), "read from the table again")
}

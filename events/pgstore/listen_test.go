package pgstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
)

// awaitHealthy waits for the listener's state to become want.
func awaitHealthy(t *testing.T, st *pgstore.Store, want bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	require.NoError(t, st.WaitPushHealthy(ctx, want))
}

func TestNotifyWakesOtherProcesses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := setup(t, nil, 6)
	// A second store on the same schema stands for another process.
	b, err := pgstore.New(ctx, a.db.Pool, &pgstore.Config{Schema: a.db.Schema})
	require.NoError(t, err)
	defer b.Close()
	awaitHealthy(t, b, true)

	wake := b.Wake()
	_, err = a.store.Append(ctx, "n-1", events.NoStream, raw(1))
	require.NoError(t, err)
	select {
	case <-wake:
	case <-time.After(10 * time.Second):
		t.Fatal("the other store was not woken by NOTIFY")
	}

	// AppendTx notifies at commit (here), and not at all on rollback (see
	// requireNoNotifyOnRollback).
	tx, err := a.db.Pool.Begin(ctx)
	require.NoError(t, err)
	_, err = a.store.AppendTx(ctx, tx, "n-2", events.NoStream, raw(2))
	require.NoError(t, err)
	wake = b.Wake()
	require.NoError(t, tx.Commit(ctx))
	select {
	case <-wake:
	case <-time.After(10 * time.Second):
		t.Fatal("AppendTx's commit did not notify")
	}

	// A unit notifies after its commit (from the store, not inside the
	// transaction).
	u, err := a.store.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	_, err = u.Append(ctx, "n-3", events.NoStream, raw(3))
	require.NoError(t, err)
	wake = b.Wake()
	require.NoError(t, u.Commit(ctx))
	select {
	case <-wake:
	case <-time.After(10 * time.Second):
		t.Fatal("a unit's commit did not notify")
	}

	requireNoNotifyOnRollback(t)
}

// requireNoNotifyOnRollback: an AppendTx whose transaction rolls back
// notifies nobody. It runs on a schema of its own, where nothing else
// sends: the writer does not listen (so it answers no hello) and the
// other process appends nothing. PostgreSQL delivers notifications in
// commit order, so a marker sent after the rollback, and then the commit
// of a second AppendTx, come after anything the rolled-back one sent:
// nothing for the schema may reach a listener before the marker, and
// the other process's wake-up must come only from the commit.
func requireNoNotifyOnRollback(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	iso := setup(t, nil, 4)
	other := iso.store // the other process, listening
	writer, err := pgstore.New(ctx, iso.db.Pool, &pgstore.Config{Schema: iso.db.Schema, DisableListen: true})
	require.NoError(t, err)
	defer writer.Close()
	awaitHealthy(t, other, true)

	listener, err := pgx.Connect(ctx, iso.db.URL)
	require.NoError(t, err)
	defer listener.Close(context.WithoutCancel(ctx))
	_, err = listener.Exec(ctx, "LISTEN "+pgx.Identifier{pgstore.NotifyChannel}.Sanitize())
	require.NoError(t, err)
	notify := func(payload string) {
		t.Helper()
		_, err := iso.db.Pool.Exec(ctx, "SELECT pg_notify($1, $2)", pgstore.NotifyChannel, payload)
		require.NoError(t, err)
	}

	// Once the other process has handled a checkpoint notification, it
	// has handled everything before it, its listener's start included
	// (which wakes it): from then on nothing wakes it but this test.
	synced := make(chan struct{}, 1)
	stopWatching := other.WatchCheckpoints(func(name string, _ events.Token) {
		if name == "sync" {
			select {
			case synced <- struct{}{}:
			default:
			}
		}
	})
	defer stopWatching()
	notify("c:" + iso.db.Schema + ":the-test:0:1:sync")
	select {
	case <-synced:
	case <-time.After(10 * time.Second):
		t.Fatal("the other process did not hear the sync notification")
	}
	wake := other.Wake()

	tx, err := iso.db.Pool.Begin(ctx)
	require.NoError(t, err)
	_, err = writer.AppendTx(ctx, tx, "rb-1", events.NoStream, raw(1))
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))

	marker := "x:" + iso.db.Schema + ":after-rollback" // a kind every store ignores
	notify(marker)
	for {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		n, err := listener.WaitForNotification(wctx)
		cancel()
		require.NoError(t, err, "the marker never arrived")
		if n.Payload == marker {
			break
		}
		require.NotEqual(t, "e:"+iso.db.Schema, n.Payload, "the rolled-back AppendTx notified")
	}
	select {
	case <-wake:
		t.Fatal("the other process was woken with nothing committed")
	default:
	}

	// The same append committed does wake it (and finds the stream new:
	// the rollback dropped the event too).
	tx, err = iso.db.Pool.Begin(ctx)
	require.NoError(t, err)
	_, err = writer.AppendTx(ctx, tx, "rb-1", events.NoStream, raw(2))
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	select {
	case <-wake:
	case <-time.After(10 * time.Second):
		t.Fatal("AppendTx's commit did not notify")
	}
}

func TestListenConnectionKilledRecovers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := setup(t, nil, 6)
	awaitHealthy(t, a.store, true)
	_, err := a.store.Append(ctx, "remembered-1", events.NoStream, raw(1))
	require.NoError(t, err)
	_, _, ok := pgstore.RememberedHead(a.store, "remembered-1")
	require.True(t, ok)

	// Kill the listen connection, as a failover or an operator would.
	var killed int
	require.NoError(t, a.db.Pool.QueryRow(ctx,
		`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`,
		"converge-listen-"+a.db.Schema).Scan(&killed))
	require.Equal(t, 1, killed)
	awaitHealthy(t, a.store, false)
	_, _, ok = pgstore.RememberedHead(a.store, "remembered-1")
	require.False(t, ok, "a store that lost the server forgets the heads it remembered")
	awaitHealthy(t, a.store, true)

	// After the reconnect, notifications from others arrive again.
	other, err := pgstore.New(ctx, a.db.Pool, &pgstore.Config{Schema: a.db.Schema, DisableListen: true})
	require.NoError(t, err)
	defer other.Close()
	wake := a.store.Wake()
	_, err = other.Append(ctx, "k-1", events.NoStream, raw(1))
	require.NoError(t, err)
	select {
	case <-wake:
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up after the listener reconnected")
	}
}

func TestNewRefusesUnmigratedSchema(t *testing.T) {
	t.Parallel()
	a := setup(t, nil, 4)
	_, err := pgstore.New(context.Background(), a.db.Pool, &pgstore.Config{Schema: "nope_" + a.db.Schema})
	require.ErrorContains(t, err, "converge migrate")
}

package pgstore_test

import (
	"context"
	"testing"
	"time"

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

	// AppendTx notifies at commit, and not at all on rollback.
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
}

func TestListenConnectionKilledRecovers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := setup(t, nil, 6)
	awaitHealthy(t, a.store, true)

	// Kill the listen connection, as a failover or an operator would.
	var killed int
	require.NoError(t, a.db.Pool.QueryRow(ctx,
		`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`,
		"converge-listen-"+a.db.Schema).Scan(&killed))
	require.Equal(t, 1, killed)
	awaitHealthy(t, a.store, false)
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

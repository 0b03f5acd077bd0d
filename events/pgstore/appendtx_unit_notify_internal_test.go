package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestAppendTxInAUnitNotifiesOnce: AppendTx on a unit's own transaction
// (TxFromContext) sends no NOTIFY inside it, which would make the commit
// take PostgreSQL's notify lock: the unit knows of the append and
// notifies after its commit, once. Another process hears exactly one
// wake-up for the commit.
func TestAppendTxInAUnitNotifiesOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, nil)
	st, err := New(ctx, db.Pool, &Config{Schema: db.Schema, DisableListen: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })

	// Another process's listener, as the notifier looks for it.
	cc, err := pgx.ParseConfig(pgtest.URL(t))
	require.NoError(t, err)
	cc.RuntimeParams["application_name"] = listenAppName(db.Schema)
	other, err := pgx.ConnectConfig(ctx, cc)
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close(context.Background()) })
	_, err = other.Exec(ctx, "LISTEN "+pgx.Identifier{NotifyChannel}.Sanitize())
	require.NoError(t, err)
	st.notifier.countListeners(ctx)
	require.True(t, st.notifier.others.Load())

	u, err := st.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	tx, err := TxFromContext(u.Context(ctx))
	require.NoError(t, err)
	_, err = st.AppendTx(ctx, tx, "order-1", events.NoStream, events.Event{Data: events.Raw{Type: "t", Payload: json.RawMessage(`{}`)}})
	require.NoError(t, err)
	require.NoError(t, u.Commit(ctx))

	// The channel is the server's, shared by every test's schema: the
	// others' wake-ups are skipped, this schema's counted.
	want := st.eventsPayload()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		n, err := other.WaitForNotification(wctx)
		require.NoError(t, err, "no wake-up for the commit")
		if n.Payload == want {
			break
		}
	}
	// No second one: a bounded wait, as nothing signals an absence.
	wctx, cancel = context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	for {
		n, err := other.WaitForNotification(wctx)
		if err != nil {
			require.True(t, errors.Is(err, context.DeadlineExceeded) || wctx.Err() != nil, "%v", err)
			return
		}
		require.NotEqual(t, want, n.Payload, "the commit was announced twice: AppendTx notified inside the unit's transaction")
	}
}

// TestAppendTxInAnotherStoresUnitNotifies: AppendTx of one store on the
// transaction of another store's unit (another schema) announces the
// append on its own schema: the unit would announce it on the wrong one.
func TestAppendTxInAnotherStoresUnitNotifies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbA, dbB := pgtest.New(t, nil), pgtest.New(t, nil)
	a, err := New(ctx, dbA.Pool, &Config{Schema: dbA.Schema, DisableListen: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Close() })
	b, err := New(ctx, dbB.Pool, &Config{Schema: dbB.Schema, DisableListen: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })

	cc, err := pgx.ParseConfig(pgtest.URL(t))
	require.NoError(t, err)
	listener, err := pgx.ConnectConfig(ctx, cc)
	require.NoError(t, err)
	t.Cleanup(func() { _ = listener.Close(context.Background()) })
	_, err = listener.Exec(ctx, "LISTEN "+pgx.Identifier{NotifyChannel}.Sanitize())
	require.NoError(t, err)

	u, err := a.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	tx, err := TxFromContext(u.Context(ctx))
	require.NoError(t, err)
	_, err = b.AppendTx(ctx, tx, "order-1", events.NoStream, events.Event{Data: events.Raw{Type: "t", Payload: json.RawMessage(`{}`)}})
	require.NoError(t, err)
	require.NoError(t, u.Commit(ctx))

	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		n, err := listener.WaitForNotification(wctx)
		require.NoError(t, err, "no wake-up for the schema the events went to")
		if n.Payload == b.eventsPayload() {
			return
		}
	}
}

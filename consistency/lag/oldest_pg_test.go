package lag_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestTimeLagIsTheOldestUnprocessedEvent: on PostgreSQL the feed is in
// the order of the appending transactions' ids, so the first event after
// a checkpoint need not be the one that has waited longest. A transaction
// that took its id early (it wrote its own tables first, as AppendTx
// invites) and appends late puts a young event in front of an older one
// committed meanwhile; the time lag is still how long the older one has
// waited, and the SLA is judged on it.
func TestTimeLagIsTheOldestUnprocessedEvent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t, nil)
	store, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, DisableListen: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })

	first, err := store.Append(ctx, "order-0", events.NoStream, rawEvent(0))
	require.NoError(t, err)
	commitAt(t, store.Checkpoints(), "orders", first.Token)

	// T1 takes its transaction id first.
	t1, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = t1.Rollback(context.WithoutCancel(ctx)) }()
	_, err = t1.Exec(ctx, `SELECT pg_current_xact_id()`)
	require.NoError(t, err)

	// Another transaction commits an event now: it waits from now on.
	older, err := store.Append(ctx, "order-1", events.NoStream, rawEvent(1))
	require.NoError(t, err)
	// Time the older event has to age: what the test measures.
	time.Sleep(400 * time.Millisecond)
	_, err = store.AppendTx(ctx, t1, "order-2", events.NoStream, rawEvent(2))
	require.NoError(t, err)
	require.NoError(t, t1.Commit(ctx))
	evs, err := store.ReadStream(ctx, "order-1", 1, 1)
	require.NoError(t, err)
	olderAt := evs[0].RecordedAt

	mon, err := lag.NewMonitor(store, &lag.Config{
		Projections: []lag.Target{{Name: "orders", SLA: 300 * time.Millisecond}},
		Logger:      slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	checked := time.Now()
	rs, err := mon.Check(ctx)
	require.NoError(t, err)
	r := rs[0]
	t.Logf("older event %s recorded %s before the check; report: behind %d, time lag %s, breached %v (%s)", older.Token, checked.Sub(olderAt), r.PositionLag, r.TimeLag, r.Breached, r.Reason)
	require.Equal(t, int64(2), r.PositionLag)
	require.GreaterOrEqual(t, r.TimeLag, checked.Sub(olderAt), "the older event is unprocessed: the time lag is at least its age")
	require.True(t, r.Breached, "an unprocessed event has waited over the 300ms SLA")
}

package lag_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/clocktest"
	"github.com/converge-es/converge/internal/pgtest"
)

func rawEvent(n int) events.Event {
	p, _ := json.Marshal(map[string]int{"n": n})
	return events.Event{Data: events.Raw{Type: "ticked", Payload: p}}
}

// commitAt leases name for owner and stores pos as its checkpoint, as a
// projection runner does after handling the event at pos.
func commitAt(t *testing.T, cps feed.CheckpointStore, name string, pos events.Token) {
	t.Helper()
	ctx := t.Context()
	l, err := cps.Acquire(ctx, name, "runner-1", time.Hour)
	require.NoError(t, err)
	u, err := cps.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, u.Commit(u.Context(ctx), feed.Move{Lease: l, Position: pos}))
}

func TestMemstore(t *testing.T) {
	t.Parallel()
	clock := clocktest.New(t0)
	store, err := memstore.New(&memstore.Config{Clock: clock})
	require.NoError(t, err)
	defer store.Close()
	ctx := t.Context()

	first, err := store.Append(ctx, "order-1", events.NoStream, rawEvent(1))
	require.NoError(t, err)
	commitAt(t, store.Checkpoints(), "orders", first.Token)
	clock.Advance(time.Second)
	last, err := store.Append(ctx, "order-1", events.Exactly(1), rawEvent(2), rawEvent(3))
	require.NoError(t, err)
	clock.Advance(4 * time.Second)

	mon, err := lag.NewMonitor(store, &lag.Config{Clock: clock, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	reports, err := mon.Check(ctx)
	require.NoError(t, err)
	require.Equal(t, []lag.Report{{
		Name: "orders", Owner: "runner-1", Checkpoint: first.Token, Head: last.Token,
		PositionLag: 2, TimeLag: 4 * time.Second, HeartbeatAge: 5 * time.Second,
		SLA: lag.UserFacingSLA, Breached: true, Reason: lag.ReasonTimeLag, At: t0.Add(5 * time.Second),
	}}, reports)
}

// TestPostgresLongTransaction runs against PostgreSQL: a transaction left
// open holds the read horizon back, and the report shows it.
func TestPostgresLongTransaction(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t, nil)
	store, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, DisableListen: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })

	first, err := store.Append(ctx, "order-1", events.NoStream, rawEvent(1))
	require.NoError(t, err)
	commitAt(t, store.Checkpoints(), "orders", first.Token)
	_, err = store.Append(ctx, "order-1", events.Exactly(1), rawEvent(2))
	require.NoError(t, err)

	// BEGIN; write something; keep it open.
	long, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = long.Rollback(context.WithoutCancel(ctx)) }()
	_, err = store.AppendTx(ctx, long, "order-2", events.NoStream, rawEvent(3))
	require.NoError(t, err)
	// Committed after the long transaction began: held back behind it.
	head, err := store.Append(ctx, "order-3", events.NoStream, rawEvent(4))
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	mon, err := lag.NewMonitor(store, &lag.Config{Registerer: reg, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	reports, err := mon.Check(ctx)
	require.NoError(t, err)
	require.Len(t, reports, 1)
	r := reports[0]
	require.Equal(t, "orders", r.Name)
	require.Equal(t, "runner-1", r.Owner)
	require.Equal(t, first.Token, r.Checkpoint)
	require.Equal(t, head.Token, r.Head)
	require.Equal(t, int64(2), r.PositionLag, "both committed events count, the held-back one too; the open one does not")
	require.Positive(t, r.TimeLag)
	require.Less(t, r.TimeLag, time.Minute)
	require.Positive(t, r.HeartbeatAge)
	require.Positive(t, r.HorizonAge, "the open transaction holds the horizon back")

	b := bundle{reg: reg}
	require.Positive(t, b.metric(t, lag.MetricHorizonAge, ""))
	require.Equal(t, 2.0, b.metric(t, lag.MetricPositionLag, "orders"))
}

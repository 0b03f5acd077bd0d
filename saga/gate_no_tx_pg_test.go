package saga_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
)

// TestGatedStepHoldsNoTransactionWhileItWaits checks, on PostgreSQL, the
// promise that a gated step waits for its read models with no transaction
// open: neither while the engine waits (up to GateTimeout) in the event's
// unit before the step, nor while the step is parked and the driver
// watches its models. An open transaction there would hold the cluster's
// read horizon (every feed reader) for as long as a read model lags. It
// runs on PostgreSQL only: memstore's only open-unit accessor, HorizonAge,
// counts units that appended, and the step waits before its unit is used
// at all, so memory would show nothing either way.
func TestGatedStepHoldsNoTransactionWhileItWaits(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := pgtest.New(t, nil)
	// The store's own pool is named after the test's schema, so
	// pg_stat_activity shows its connections alone.
	app := "converge_" + db.Schema
	pcfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	pcfg.MaxConns = 4
	pcfg.ConnConfig.RuntimeParams["search_path"] = db.Schema
	pcfg.ConnConfig.RuntimeParams["application_name"] = app
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	reg := registry()
	store, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: db.Schema, Registry: reg})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	// openTx describes the store's connections that sit in a transaction
	// (with or without an xid), read on the test's other pool. A
	// transaction held across a wait is idle in it; a statement the
	// driver's sweep runs meanwhile is active, and ends on its own.
	openTx := func() string {
		var out string
		require.NoError(t, db.Pool.QueryRow(ctx, `
			SELECT coalesce(string_agg(state || ' xid=' || coalesce(backend_xid::text, '-') || ': ' || left(query, 100), '; '), '')
			FROM pg_stat_activity
			WHERE application_name = $1 AND state LIKE 'idle in transaction%'`, app).Scan(&out))
		return out
	}

	tracker, err := consistency.NewTracker(&consistency.TrackerConfig{})
	require.NoError(t, err)
	var ran atomic.Int32
	s := saga.New[orderState]("no_tx", nil)
	saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
	saga.On(s, byOrder[StockReserved], func(*saga.Step[orderState], StockReserved) error {
		ran.Add(1)
		return nil
	}, saga.Reads(summaryModel))
	waiting := func() { awaitWaiters(ctx, t, tracker, 1) }
	status := func(eng *saga.Engine, id string) saga.Status {
		tl, err := eng.Show(ctx, "no_tx", id)
		require.NoError(t, err)
		return tl.Info.Status
	}

	// The engine waits in the event's unit, within GateTimeout.
	waits, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{s}, Tracker: tracker, GateTimeout: time.Minute})
	require.NoError(t, err)
	b := bare{store: store, engine: waits}
	b.deliver(t, b.append(t, "order-1", OrderPlaced{OrderID: "1"}))
	reserved := b.append(t, "order-1", StockReserved{OrderID: "1"})
	done := make(chan error, 1)
	go func() {
		done <- drive.Unit(ctx, store, 0, func(ctx context.Context) error { return waits.Handle(ctx, reserved) })
	}()
	waiting()
	during := openTx()
	// The unit ends before anything is asserted: a failed assertion with
	// a transaction open would hold the horizon of the shared cluster.
	tracker.Advance(summaryModel, reserved.Token)
	require.NoError(t, <-done)
	require.Empty(t, during, "a transaction was open while the step waited for its read model")
	require.Equal(t, int32(1), ran.Load())
	require.Equal(t, saga.StatusRunning, status(waits, "1"))

	// The step is parked and the driver watches its model.
	parks, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{s}, Tracker: tracker, GateTimeout: time.Nanosecond})
	require.NoError(t, err)
	b = bare{store: store, engine: parks}
	b.deliver(t, b.append(t, "order-2", OrderPlaced{OrderID: "2"}))
	reserved = b.append(t, "order-2", StockReserved{OrderID: "2"})
	b.deliver(t, reserved)
	require.Equal(t, saga.StatusParked, status(parks, "2"))
	require.NoError(t, parks.Start(ctx))
	waiting()
	during = openTx()
	tracker.Advance(summaryModel, reserved.Token)
	_, err = parks.RunParked(ctx) // whether or not the driver got there first
	require.NoError(t, err)
	require.NoError(t, parks.Stop(ctx))
	require.Empty(t, during, "a transaction was open while the parked step waited for its read model")
	require.Equal(t, int32(2), ran.Load())
	require.Equal(t, saga.StatusRunning, status(parks, "2"))

	// The engine waits at the head of a unit of several events (a
	// processor that is behind, without a Gate of its own), before the
	// unit reads the instances of all of them.
	newProc := func() *feed.Processor {
		p, err := feed.NewProcessor(store, &feed.ProcessorConfig{
			Name: "no_tx_head", Types: waits.Types(), PartitionKey: waits.PartitionKey(), CommitBatch: 10,
			Subscriber: feed.SubscriberConfig{Logger: slog.New(slog.DiscardHandler)},
		}, waits.Handle)
		require.NoError(t, err)
		return p
	}
	run := func(p *feed.Processor) (stop func()) {
		pctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- p.Run(pctx) }()
		return func() {
			cancel()
			require.ErrorIs(t, <-done, context.Canceled)
		}
	}
	b = bare{store: store, engine: waits}
	placed := b.append(t, "order-3", OrderPlaced{OrderID: "3"})
	first := newProc()
	stop := run(first)
	require.Eventually(t, func() bool {
		pos, err := first.Position(ctx)
		return err == nil && !pos.Before(placed.Token)
	}, 30*time.Second, time.Millisecond, "the processor catches up")
	stop()
	reserved = b.append(t, "order-3", StockReserved{OrderID: "3"})
	b.append(t, "order-4", OrderPlaced{OrderID: "4"})
	b.append(t, "order-5", OrderPlaced{OrderID: "5"})
	stop = run(newProc())
	waiting()
	during = openTx()
	tracker.Advance(summaryModel, reserved.Token)
	require.Eventually(t, func() bool { return ran.Load() == 3 }, 30*time.Second, time.Millisecond)
	require.Eventually(t, func() bool {
		_, err := waits.Show(ctx, "no_tx", "5")
		return err == nil
	}, 30*time.Second, time.Millisecond, "the unit's later events ran")
	stop()
	require.Empty(t, during, "a transaction was open while the head of a unit waited for its read model")
}

package saga_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
)

// runOnRouter feeds eng from the feed through a Watermill router and runs
// its loops until the test ends.
func runOnRouter(t *testing.T, store saga.Store, eng *saga.Engine, tracker *consistency.Tracker, setup func(*message.Router)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	if setup != nil {
		setup(router)
	}
	proc, err := feed.NewProcessor(store, &feed.ProcessorConfig{
		Name: "sagas", Types: eng.Types(), Partitions: 2, PartitionKey: eng.PartitionKey(),
		Gate: eng.Gate, Waiter: tracker, GateTimeout: 10 * time.Millisecond,
	}, eng.Handle)
	require.NoError(t, err)
	require.NoError(t, proc.AddHandlers(router))
	require.NoError(t, eng.Start(ctx))
	done := make(chan error, 1)
	go func() { done <- router.Run(ctx) }()
	<-router.Running()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, router.Close())
		require.NoError(t, <-done)
		require.NoError(t, proc.Close())
		require.NoError(t, eng.Stop(context.Background()))
	})
}

// TestLoopsFireTimersAndResumeParkedSteps runs the engine's own loops on
// the wall clock: a timer fires by itself, and a parked step runs as soon
// as the Tracker reports its read model caught up.
func TestLoopsFireTimersAndResumeParkedSteps(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		s := saga.New[orderState]("loops", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
			if e.Total < 100 {
				st.Schedule("remind", 50*time.Millisecond)
			}
			return nil
		})
		saga.OnTimeout(s, "remind", func(st *saga.Step[orderState], _ saga.Timeout) error {
			st.Complete()
			return st.Send(NotifyCustomer{OrderID: st.ID(), Text: "reminder"})
		})
		saga.On(s, byOrder[StockReserved], func(st *saga.Step[orderState], e StockReserved) error {
			return st.Send(ChargePayment{OrderID: e.OrderID})
		}, saga.Reads("lagging"))
		tracker, err := consistency.NewTracker(nil)
		require.NoError(t, err)
		store := newStore(t, mk)
		// The sweep waits an hour: only the Tracker's push can wake the
		// parked step within the test.
		eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{s}, Tracker: tracker, GateTimeout: 10 * time.Millisecond, SweepInterval: time.Hour})
		require.NoError(t, err)
		b := bare{store: store, engine: eng}
		runOnRouter(t, b.store, eng, tracker, nil)
		ctx := context.Background()

		started := time.Now()
		b.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 5})
		require.Eventually(t, func() bool {
			tl, err := eng.Show(ctx, "loops", "1")
			return err == nil && tl.Info.Status == saga.StatusCompleted
		}, 10*time.Second, 5*time.Millisecond)
		require.GreaterOrEqual(t, time.Since(started), 50*time.Millisecond, "the timer did not fire early")
		require.Len(t, b.commandIDs(t)["customer.notify"], 1)

		b.append(t, "order-2", OrderPlaced{OrderID: "2", Total: 500})
		reserved := b.append(t, "order-2", StockReserved{OrderID: "2"})
		require.Eventually(t, func() bool {
			tl, err := eng.Show(ctx, "loops", "2")
			return err == nil && tl.Info.Status == saga.StatusParked
		}, 10*time.Second, 5*time.Millisecond)
		require.Empty(t, b.commandIDs(t)["payment.charge"])
		tracker.Advance("lagging", reserved.Token)
		require.Eventually(t, func() bool {
			tl, err := eng.Show(ctx, "loops", "2")
			return err == nil && tl.Info.Status == saga.StatusRunning
		}, 10*time.Second, 5*time.Millisecond, "the Tracker's push woke the parked step")
		require.Len(t, b.commandIDs(t)["payment.charge"], 1)
	})
}

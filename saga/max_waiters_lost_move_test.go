package saga_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
)

type slotPositions struct {
	mu  sync.Mutex
	pos map[string]events.Token
}

func (p *slotPositions) Position(_ context.Context, name string) (events.Token, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pos[name], nil
}

func (p *slotPositions) set(name string, tok events.Token) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pos[name] = tok
}

// silentWatcher is push that is healthy and reports nothing (every
// NOTIFY lost).
type silentWatcher struct{}

func (silentWatcher) WatchCheckpoints(func(string, events.Token)) func() { return func() {} }

// TestAParkedStepBeyondMaxWaitersFindsALostMove: the driver's watches
// hold the Tracker's waiter slots (one per set of models parked on). When
// they fill MaxWaiters, the watch of a step parked on another model is
// refused at every sweep, so no wait stays open on its model. A lost
// notification of that model's move (push healthy, the store holding the
// position) must still be found: a refused wait has its names read at the
// fallback loop's next tick, and the step runs.
func TestAParkedStepBeyondMaxWaitersFindsALostMove(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const modelA, modelB = "model_a", "model_b"
	// Steps parked on model A take the only slot, however many they are.
	const slots, parkedOnA = 1, 3
	pr := &slotPositions{pos: map[string]events.Token{}}
	const interval = 10 * time.Millisecond
	tracker, err := consistency.NewTracker(&consistency.TrackerConfig{
		Positions: pr, Watcher: silentWatcher{}, PushHealthy: func() bool { return true },
		FallbackInterval: interval, MaxWaiters: slots, Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	require.NoError(t, tracker.Start(ctx))
	defer func() { _ = tracker.Stop(context.Background()) }()

	var ranB atomic.Int32
	s := saga.New[orderState]("slots", nil)
	saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
	saga.On(s, byOrder[StockReserved], func(*saga.Step[orderState], StockReserved) error { return nil }, saga.Reads(modelA))
	saga.On(s, byOrder[PaymentCharged], func(*saga.Step[orderState], PaymentCharged) error {
		ranB.Add(1)
		return nil
	}, saga.Reads(modelB))
	store := newStore(t, nil)
	eng, err := saga.NewEngine(&saga.EngineConfig{
		Store: store, Sagas: []saga.Definition{s}, Tracker: tracker,
		GateTimeout: time.Nanosecond, SweepInterval: 5 * interval, Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	b := bare{store: store, engine: eng}

	var last events.Envelope
	for i := 1; i <= parkedOnA+1; i++ {
		last = b.append(t, fmt.Sprint("order-", i), OrderPlaced{OrderID: fmt.Sprint(i)})
		b.deliver(t, last)
	}
	pr.set(modelA, last.Token)
	pr.set(modelB, last.Token)
	require.NoError(t, tracker.Learn(ctx, modelA, modelB))
	for i := 1; i <= parkedOnA; i++ {
		b.deliver(t, b.append(t, fmt.Sprint("order-", i), StockReserved{OrderID: fmt.Sprint(i)}))
	}
	require.NoError(t, eng.Start(ctx))
	defer func() { _ = eng.Stop(context.Background()) }()
	require.Eventually(t, func() bool { return tracker.Waiting(modelA) == slots }, 10*time.Second, time.Millisecond)
	charged := b.append(t, fmt.Sprint("order-", parkedOnA+1), PaymentCharged{OrderID: fmt.Sprint(parkedOnA + 1)})
	b.deliver(t, charged)
	tl, err := eng.Show(ctx, "slots", fmt.Sprint(parkedOnA+1))
	require.NoError(t, err)
	require.Equal(t, saga.StatusParked, tl.Info.Status)

	// Meanwhile any other read of any model (an HTTP read-your-writes)
	// does not wait at all: the watch holds every slot.
	{
		wctx, wcancel := context.WithTimeout(ctx, time.Second)
		st, err := tracker.Wait(wctx, charged.Token, "http_model")
		wcancel()
		require.NoError(t, err)
		t.Logf("an unrelated wait while %d steps are parked: %+v", parkedOnA, st)
	}
	pr.set(modelB, charged.Token) // committed; its notification lost
	require.Eventually(t, func() bool { return ranB.Load() > 0 }, 200*interval, interval,
		"the step parked on %s never ran although the store holds %s", modelB, charged.Token)
	require.Equal(t, int32(1), ranB.Load())
}

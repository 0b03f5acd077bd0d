package saga_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
)

// TestParkedStepsTakeOneWaiterSlotPerModelSet checks that steps parked on
// a read model that stays behind do not use up the Tracker's MaxWaiters:
// the driver watches each set of models once, whatever the number of
// instances parked on it, so a request waiting on another model (an HTTP
// read, a command handler) still waits instead of being turned away
// (ReasonRejected) and answered stale at once.
func TestParkedStepsTakeOneWaiterSlotPerModelSet(t *testing.T) {
	t.Parallel()
	forEachSeed(t, 4, 1, func(t *testing.T, mk storeMaker, seed uint64) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 41))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		store := newStore(t, mk)
		maxWaiters := 2 + rng.IntN(3)
		tracker, err := consistency.NewTracker(&consistency.TrackerConfig{MaxWaiters: maxWaiters})
		require.NoError(t, err)
		s := saga.New[orderState]("slots", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
		saga.On(s, byOrder[StockReserved], func(*saga.Step[orderState], StockReserved) error { return nil }, saga.Reads(summaryModel))
		eng, err := saga.NewEngine(&saga.EngineConfig{
			Store: store, Sagas: []saga.Definition{s}, Tracker: tracker, GateTimeout: time.Nanosecond, SweepInterval: time.Hour,
		})
		require.NoError(t, err)
		b := bare{store: store, engine: eng}
		parked := maxWaiters + 1 + rng.IntN(4)
		for i := range parked {
			id := fmt.Sprint(i)
			b.deliver(t, b.append(t, "order-"+id, OrderPlaced{OrderID: id}))
			b.deliver(t, b.append(t, "order-"+id, StockReserved{OrderID: id}))
			tl, err := eng.Show(ctx, "slots", id)
			require.NoError(t, err)
			require.Equal(t, saga.StatusParked, tl.Info.Status)
		}
		passes := passSignals(eng)
		require.NoError(t, eng.Start(ctx))
		defer func() { require.NoError(t, eng.Stop(ctx)) }()
		<-passes
		awaitWaiters(ctx, t, tracker, 1)

		// Waits on another model, each woken by a move of that model. Many
		// rounds, so that watches started by the pass but not yet waiting
		// have had every chance to take the slots first.
		const other = "other_model"
		for round := range 20 {
			pos := events.MakeToken(1, uint64(round+1))
			got := make(chan consistency.Status, 1)
			go func() {
				st, err := tracker.Wait(ctx, pos, other)
				if err != nil {
					st = consistency.Status{Stale: true, Reason: consistency.Reason(err.Error())}
				}
				got <- st
			}()
			for tracker.Waiting(other) == 0 {
				changed := tracker.WaitersChanged()
				if tracker.Waiting(other) > 0 {
					break
				}
				select {
				case st := <-got:
					require.Failf(t, "a wait on another model was turned away",
						"round %d: %+v (%d steps parked on %s, MaxWaiters %d, %d waiting on it)",
						round, st, parked, summaryModel, maxWaiters, tracker.Waiting(summaryModel))
				case <-changed:
				case <-ctx.Done():
					require.FailNow(t, "the wait never started")
				}
			}
			tracker.Advance(other, pos)
			st := <-got
			require.False(t, st.Stale, "round %d: %+v", round, st)
		}
		require.Zero(t, tracker.Stats().Rejected, "waits were turned away")
		require.Equal(t, 1, tracker.Waiting(summaryModel), "the parked steps' watches")
	})
}

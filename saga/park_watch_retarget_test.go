package saga_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/saga"
)

// TestAStepParkedOnAnEarlierTokenRunsWhenItIsReached: the driver's one
// watch per set of models waits for the smallest token parked on it. A
// step that parks later on an earlier token (its event came through
// another partition, say) runs as soon as the model reaches that token,
// not once the watch's wait for the larger one ends (here a minute).
func TestAStepParkedOnAnEarlierTokenRunsWhenItIsReached(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		store := newStore(t, mk)
		tracker, err := consistency.NewTracker(&consistency.TrackerConfig{DefaultTimeout: time.Minute, MaxTimeout: time.Minute})
		require.NoError(t, err)
		ran := make(chan string, 2)
		s := saga.New[orderState]("retarget", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
			ran <- e.OrderID
			return nil
		}, saga.Reads(summaryModel))
		eng, err := saga.NewEngine(&saga.EngineConfig{
			Store: store, Sagas: []saga.Definition{s}, Tracker: tracker, GateTimeout: time.Nanosecond, SweepInterval: time.Hour,
		})
		require.NoError(t, err)
		b := bare{store: store, engine: eng}
		early := b.append(t, "order-early", OrderPlaced{OrderID: "early"})
		late := b.append(t, "order-late", OrderPlaced{OrderID: "late"})
		b.deliver(t, late)
		passes := passSignals(eng)
		require.NoError(t, eng.Start(ctx))
		defer func() { require.NoError(t, eng.Stop(ctx)) }()
		<-passes
		awaitWaiters(ctx, t, tracker, 1) // the watch, for late's token

		b.deliver(t, early) // parks, and the pass after it watches early's token too
		<-passes
		tracker.Advance(summaryModel, early.Token)
		select {
		case id := <-ran:
			require.Equal(t, "early", id)
		case <-ctx.Done():
			require.FailNow(t, "the step parked on the earlier token did not run when the model reached it")
		}
		tracker.Advance(summaryModel, late.Token)
		require.Equal(t, "late", <-ran)
	})
}

package saga_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/internal/clocktest"
	"github.com/converge-es/converge/saga"
)

// TestSweepOpensNoUnitForStepsAlreadyStuck: a step is recorded stuck once;
// later sweeps count it from its parked-index row without a unit (a
// locked read of the instance) each, so a backlog of thousands of stuck
// steps behind a read model that is down does not cost thousands of
// transactions every SweepInterval. The gauge still counts them, and they
// run once the model catches up.
func TestSweepOpensNoUnitForStepsAlreadyStuck(t *testing.T) {
	t.Parallel()
	forEachSeed(t, 3, 1, func(t *testing.T, mk storeMaker, seed uint64) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 43))
		ctx := context.Background()
		store := &unitWatch{Store: newStore(t, mk)}
		clock := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		tracker, err := consistency.NewTracker(&consistency.TrackerConfig{Positions: store.Checkpoints()})
		require.NoError(t, err)
		s := saga.New[orderState]("stuck_sweep", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil }, saga.Reads(summaryModel))
		eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{s}, Tracker: tracker, Clock: clock, GateTimeout: time.Nanosecond})
		require.NoError(t, err)
		b := bare{store: store, engine: eng}
		n := 2 + rng.IntN(5)
		for i := range n {
			b.deliver(t, b.append(t, fmt.Sprint("order-", i), OrderPlaced{OrderID: fmt.Sprint(i)}))
		}
		clock.Advance(saga.DefaultStuckAfter + time.Minute)
		gauge := eng.Metrics().Stuck.WithLabelValues("stuck_sweep")
		_, err = eng.RunParked(ctx)
		require.NoError(t, err)
		for i := range n {
			require.True(t, b.stateInfo(t, "stuck_sweep", fmt.Sprint(i)).Stuck)
		}
		require.Equal(t, float64(n), testutil.ToFloat64(gauge))

		for range 1 + rng.IntN(3) {
			clock.Advance(time.Duration(1+rng.IntN(60)) * time.Second)
			before := store.begun.Load()
			ran, err := eng.RunParked(ctx)
			require.NoError(t, err)
			require.Zero(t, ran)
			require.Equal(t, before, store.begun.Load(), "a sweep began units for %d steps already recorded stuck (%d before)", n, before)
			require.Equal(t, float64(n), testutil.ToFloat64(gauge))
		}

		tracker.Advance(summaryModel, b.append(t, "other", OrderPlaced{OrderID: "x"}).Token)
		ran, err := eng.RunParked(ctx)
		require.NoError(t, err)
		require.Equal(t, n, ran)
		require.Zero(t, testutil.ToFloat64(gauge))
	})
}

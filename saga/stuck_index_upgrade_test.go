package saga_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/clocktest"
	"github.com/converge-es/converge/saga"
)

// TestSweepOpensNoUnitForStepsStuckBeforeTheUpgrade: steps recorded stuck
// by a release before the parked-index row said so (their index rows have
// no "stuck") are the backlog the fix is for (a model down for a while,
// thousands parked behind it). After the upgrade, at most the first
// sweep may read each instance; later sweeps must count them without a
// unit each.
func TestSweepOpensNoUnitForStepsStuckBeforeTheUpgrade(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		store := &unitWatch{Store: newStore(t, mk)}
		clock := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		tracker, err := consistency.NewTracker(&consistency.TrackerConfig{Positions: store.Checkpoints()})
		require.NoError(t, err)
		s := saga.New[orderState]("stuck_upgrade", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil }, saga.Reads(summaryModel))
		eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{s}, Tracker: tracker, Clock: clock, GateTimeout: time.Nanosecond})
		require.NoError(t, err)
		b := bare{store: store, engine: eng}
		const n = 5
		for i := range n {
			b.deliver(t, b.append(t, fmt.Sprint("order-", i), OrderPlaced{OrderID: fmt.Sprint(i)}))
		}
		clock.Advance(saga.DefaultStuckAfter + time.Minute)
		_, err = eng.RunParked(ctx)
		require.NoError(t, err)
		for i := range n {
			require.True(t, b.stateInfo(t, "stuck_upgrade", fmt.Sprint(i)).Stuck)
		}

		// The index rows as the previous release wrote them: no "stuck".
		u, err := store.Store.Checkpoints().Begin(ctx)
		require.NoError(t, err)
		rows, err := u.Rows().List(ctx, "converge.saga", "parked", feed.RowQuery{Limit: 100})
		require.NoError(t, err)
		require.Len(t, rows, n)
		for _, r := range rows {
			var m map[string]any
			require.NoError(t, json.Unmarshal(r.Value, &m))
			require.Equal(t, true, m["stuck"])
			delete(m, "stuck")
			v, err := json.Marshal(m)
			require.NoError(t, err)
			require.NoError(t, u.Rows().Put(ctx, "converge.saga", "parked", r.Key, v, r.Token))
		}
		require.NoError(t, u.Commit(ctx))

		gauge := eng.Metrics().Stuck.WithLabelValues("stuck_upgrade")
		for sweep := range 3 {
			clock.Advance(5 * time.Second)
			before := store.begun.Load()
			ran, err := eng.RunParked(ctx)
			require.NoError(t, err)
			require.Zero(t, ran)
			require.Equal(t, float64(n), testutil.ToFloat64(gauge))
			if sweep > 0 {
				require.Equal(t, before, store.begun.Load(),
					"sweep %d after the upgrade began %d units for %d steps already recorded stuck", sweep, store.begun.Load()-before, n)
			}
		}
	})
}

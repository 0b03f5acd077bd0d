package saga_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/internal/clocktest"
	"github.com/converge-es/converge/saga"
)

// TestStuckGaugeAfterRetryOrCancelByAnotherEngine: two engines on
// one store. Engine B retries (or cancels) a step recorded stuck while
// engine A's parked-step pass is under way (it has listed the parked
// index, not yet reached the instance). When A's pass ends the instance
// is no longer stuck, so A's converge_saga_stuck_instances must not count
// it: before the sweep counted recorded-stuck steps from the index row,
// markStuck re-read the instance under its lock and did not.
func TestStuckGaugeAfterRetryOrCancelByAnotherEngine(t *testing.T) {
	t.Parallel()
	for _, op := range []string{"retry", "cancel"} {
		t.Run(op, func(t *testing.T) {
			t.Parallel()
			forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
				ctx := context.Background()
				inner := newStore(t, mk)
				hs := &hookStore{Store: inner}
				clock := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
				tracker, err := consistency.NewTracker(&consistency.TrackerConfig{Positions: inner.Checkpoints()})
				require.NoError(t, err)
				def := func() saga.Definition {
					s := saga.New[orderState]("gauge_race", nil)
					saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil }, saga.Reads(summaryModel))
					return s
				}
				engA, err := saga.NewEngine(&saga.EngineConfig{Store: hs, Sagas: []saga.Definition{def()}, Tracker: tracker, Clock: clock, GateTimeout: time.Nanosecond})
				require.NoError(t, err)
				engB, err := saga.NewEngine(&saga.EngineConfig{Store: inner, Sagas: []saga.Definition{def()}, Tracker: tracker, Clock: clock, GateTimeout: time.Nanosecond})
				require.NoError(t, err)
				a := bare{store: hs, engine: engA}
				a.deliver(t, a.append(t, "order-1", OrderPlaced{OrderID: "1"}))
				clock.Advance(saga.DefaultStuckAfter + time.Minute)
				gauge := engA.Metrics().Stuck.WithLabelValues("gauge_race")
				_, err = engA.RunParked(ctx)
				require.NoError(t, err)
				require.True(t, a.stateInfo(t, "gauge_race", "1").Stuck)
				require.Equal(t, 1.0, testutil.ToFloat64(gauge))

				var opErr error
				hook := func() {
					if op == "retry" {
						opErr = engB.Retry(ctx, "gauge_race", "1")
					} else {
						opErr = engB.Cancel(ctx, "gauge_race", "1", "review")
					}
				}
				hs.afterParkedList.Store(&hook)
				_, err = engA.RunParked(ctx)
				require.NoError(t, err)
				require.NoError(t, opErr)
				info := a.stateInfo(t, "gauge_race", "1")
				require.False(t, info.Stuck)
				require.Equal(t, 0.0, testutil.ToFloat64(gauge),
					"engine A's pass ended after the %s, the instance is %s (stuck=%t), yet A's gauge still counts it stuck", op, info.Status, info.Stuck)
			})
		})
	}
}

// TestStuckStepOpsOnAStartedEngine: a started engine (SweepInterval
// an hour) with a step recorded stuck. A retry keeps it watched (it runs
// when its model moves), and after a cancel the stuck gauge agrees with
// the instance, as it does after a retry.
func TestStuckStepOpsOnAStartedEngine(t *testing.T) {
	t.Parallel()
	for _, op := range []string{"retry", "cancel"} {
		t.Run(op, func(t *testing.T) {
			t.Parallel()
			forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				store := newStore(t, mk)
				clock := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
				tracker, err := consistency.NewTracker(&consistency.TrackerConfig{Positions: store.Checkpoints()})
				require.NoError(t, err)
				ran := make(chan string, 4)
				s := saga.New[orderState]("stuck_started", nil)
				saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], _ OrderPlaced) error {
					ran <- st.ID()
					return nil
				}, saga.Reads(summaryModel))
				eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{s}, Tracker: tracker, Clock: clock, GateTimeout: time.Nanosecond, SweepInterval: time.Hour})
				require.NoError(t, err)
				b := bare{store: store, engine: eng}
				b.deliver(t, b.append(t, "order-1", OrderPlaced{OrderID: "1"}))
				clock.Advance(saga.DefaultStuckAfter + time.Minute)
				_, err = eng.RunParked(ctx)
				require.NoError(t, err)
				require.True(t, b.stateInfo(t, "stuck_started", "1").Stuck)

				passes := passSignals(eng)
				require.NoError(t, eng.Start(ctx))
				defer func() { require.NoError(t, eng.Stop(context.Background())) }()
				<-passes
				gauge := eng.Metrics().Stuck.WithLabelValues("stuck_started")
				require.Equal(t, 1.0, testutil.ToFloat64(gauge))

				if op == "retry" {
					require.NoError(t, eng.Retry(ctx, "stuck_started", "1"))
				} else {
					require.NoError(t, eng.Cancel(ctx, "stuck_started", "1", "review"))
				}
				info := b.stateInfo(t, "stuck_started", "1")
				require.False(t, info.Stuck)
				// The pass the operation wakes sets the gauge (the next
				// sweep is an hour away).
				for testutil.ToFloat64(gauge) != 0 {
					select {
					case <-passes:
					case <-ctx.Done():
						require.FailNow(t, "the gauge still counts the step stuck", "after the %s the instance is %s", op, info.Status)
					}
				}
				if op == "retry" {
					tracker.Advance(summaryModel, b.append(t, "other", OrderPlaced{OrderID: "x"}).Token)
					select {
					case id := <-ran:
						require.Equal(t, "1", id)
					case <-ctx.Done():
						require.FailNow(t, "the retried step did not run when its model moved", "info %+v", b.stateInfo(t, "stuck_started", "1"))
					}
				}
			})
		})
	}
}

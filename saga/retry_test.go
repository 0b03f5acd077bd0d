package saga_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestRetryOfAStuckInstance: Engine.Retry (and an Operator's request) of a
// stuck instance restarts its stuck clock and clears the metric, but the
// step still runs only once its read models catch up; a retry of an
// instance that is neither failed by an error nor stuck is refused.
func TestRetryOfAStuckInstance(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		fx := newFixture(t, mk, setup{gated: true})
		eng := fx.Engine()
		op, err := saga.NewOperator(&saga.OperatorConfig{Source: fx.Store(), Clock: fx.Clock()})
		require.NoError(t, err)
		stuck := func() float64 { return testutil.ToFloat64(eng.Metrics().Stuck.WithLabelValues(orders)) }

		fx.HoldModel(summaryModel)
		fx.Given(placed("1", 30), ev("1", StockReserved{OrderID: "1"}))
		fx.ExpectParked(orders, "1", summaryModel)
		parkedAt := fx.Clock().Now()
		require.ErrorIs(t, eng.Retry(ctx, orders, "1"), saga.ErrNotRetryable, "a parked step that is not stuck has nothing to retry")
		require.ErrorIs(t, errOf(op.RequestRetry(ctx, orders, "1")), saga.ErrNotRetryable)

		fx.Advance(saga.DefaultStuckAfter + time.Second)
		require.True(t, fx.Instance(orders, "1").Stuck)
		require.Equal(t, 1.0, stuck())

		require.NoError(t, eng.Retry(ctx, orders, "1"))
		in := fx.Instance(orders, "1")
		require.False(t, in.Stuck)
		require.Equal(t, saga.StatusParked, in.Status)
		require.Equal(t, fx.Clock().Now(), in.ParkedSince, "the stuck clock restarts")
		require.NoError(t, fx.Settle())
		require.Zero(t, stuck(), "the pass after the retry finds it stuck no more")
		fx.ExpectCommands() // the models are still behind: the step does not run
		require.Equal(t, 1, countKind(fx.History(orders, "1"), saga.KindRetried))

		// It is reported stuck again a whole StuckAfter after the retry.
		fx.Advance(saga.DefaultStuckAfter - time.Second).ExpectCommands()
		require.False(t, fx.Instance(orders, "1").Stuck)
		fx.Advance(2 * time.Second).ExpectCommands()
		require.True(t, fx.Instance(orders, "1").Stuck)
		require.Equal(t, 1.0, stuck())

		// An operator's request does the same through the engine.
		require.NoError(t, errOf(op.RequestRetry(ctx, orders, "1")))
		_, err = eng.RunParked(ctx)
		require.NoError(t, err)
		require.False(t, fx.Instance(orders, "1").Stuck)
		require.Zero(t, stuck())
		require.Equal(t, 2, countKind(fx.History(orders, "1"), saga.KindRetried))
		fx.ExpectCommands()

		ranAt := fx.Clock().Now()
		fx.ReleaseModel(summaryModel)
		fx.ExpectCommands(ChargePayment{OrderID: "1", Amount: 30})
		// The retries restarted the stuck clock, not the park: its
		// duration is the whole wait.
		var park dto.Metric
		hist, ok := eng.Metrics().ParkSeconds.WithLabelValues(orders).(prometheus.Metric)
		require.True(t, ok)
		require.NoError(t, hist.Write(&park))
		require.Equal(t, uint64(1), park.GetHistogram().GetSampleCount())
		require.InDelta(t, ranAt.Sub(parkedAt).Seconds(), park.GetHistogram().GetSampleSum(), 1e-6, "the park's whole wait is observed")
		fx.ExpectStatus(orders, "1", saga.StatusRunning)
		require.ErrorIs(t, eng.Retry(ctx, orders, "1"), saga.ErrNotRetryable, "a running instance has nothing to retry")
		fx.When(ev("1", PaymentCharged{OrderID: "1"})).ExpectStatus(orders, "1", saga.StatusCompleted)
		require.ErrorIs(t, eng.Retry(ctx, orders, "1"), saga.ErrNotRetryable, "a completed instance has nothing to retry")
		require.ErrorIs(t, errOf(op.RequestRetry(ctx, orders, "1")), saga.ErrNotRetryable)
		fx.Given(placed("2", 5)).When(ev("2", PaymentDeclined{OrderID: "2", Reason: "no"}))
		fx.ExpectStatus(orders, "2", saga.StatusFailed)
		require.ErrorIs(t, eng.Retry(ctx, orders, "2"), saga.ErrNotRetryable, "an instance failed by its own decision has nothing to retry")
		for _, err := range []error{eng.Retry(ctx, orders, "2"), errOf(op.RequestRetry(ctx, orders, "2"))} {
			// It lists as failed, so the refusal says why failed is not enough.
			require.ErrorContains(t, err, "failed by its saga's own decision")
			require.ErrorContains(t, err, fx.Instance(orders, "2").Reason)
		}
		require.ErrorIs(t, eng.Retry(ctx, orders, "nope"), saga.ErrNotFound)
		require.Equal(t, 2, countKind(fx.History(orders, "1"), saga.KindRetried), "refused retries leave no history")
	})
}

// TestRetryOfAFailedInstanceRunsUntilTheCauseIsGone: a step that failed
// Config.MaxAttempts times is run again by Engine.Retry with a fresh count
// of attempts (failing again, with backoff, while the cause remains), and
// once the cause is gone an Operator's request runs it and then the
// messages queued behind it, and the instance completes.
func TestRetryOfAFailedInstanceRunsUntilTheCauseIsGone(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		down, calls := true, 0
		s := saga.New[orderState]("retried", &saga.Config[orderState]{MaxAttempts: 2, RetryBackoff: time.Second})
		saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
		saga.On(s, byOrder[Ping], func(st *saga.Step[orderState], e Ping) error {
			calls++
			if down {
				return errors.New("downstream is down")
			}
			st.State().Pings = append(st.State().Pings, e.N)
			if e.N == 2 {
				st.Complete()
			}
			return nil
		})
		reg := registry()
		cfg := &sagatest.Config{Registry: reg, Sagas: []saga.Definition{s}}
		if mk != nil {
			cfg.Store = mk(t, reg)
		}
		fx := sagatest.New(t, cfg)
		op, err := saga.NewOperator(&saga.OperatorConfig{Source: fx.Store(), Clock: fx.Clock()})
		require.NoError(t, err)

		fx.Given(placed("1", 1)).When(ev("1", Ping{OrderID: "1", N: 1}))
		fx.Advance(time.Second).ExpectStatus("retried", "1", saga.StatusFailed)
		require.Equal(t, 2, calls)
		fx.When(ev("1", Ping{OrderID: "1", N: 2}))
		require.Equal(t, int64(1), fx.Instance("retried", "1").Queued)
		require.Equal(t, 2, calls, "a failed instance's later messages queue")

		// Retried while the cause remains: a fresh count of attempts.
		require.NoError(t, fx.Engine().Retry(ctx, "retried", "1"))
		require.NoError(t, fx.Settle())
		require.Equal(t, 3, calls)
		in := fx.Instance("retried", "1")
		require.Equal(t, saga.StatusParked, in.Status, "the first attempt after a retry backs off instead of failing")
		require.Equal(t, fx.Clock().Now().Add(time.Second), in.RetryAt)
		fx.Advance(time.Second).ExpectStatus("retried", "1", saga.StatusFailed)
		require.Equal(t, 4, calls)
		require.Contains(t, fx.Instance("retried", "1").Reason, "downstream is down")

		// The cause is gone: the failed step and the queued one run, in order.
		down = false
		require.NoError(t, errOf(op.RequestRetry(ctx, "retried", "1")))
		require.NoError(t, fx.Settle())
		require.Equal(t, 6, calls)
		in = fx.Instance("retried", "1")
		require.Equal(t, saga.StatusCompleted, in.Status)
		require.Zero(t, in.Queued)
		require.Equal(t, []int{1, 2}, sagatest.State[orderState](fx, "retried", "1").Pings)
		require.ErrorIs(t, fx.Engine().Retry(ctx, "retried", "1"), saga.ErrNotRetryable)
		require.ErrorIs(t, errOf(op.RequestRetry(ctx, "retried", "1")), saga.ErrNotRetryable)
	})
}

// TestResumedEntrySaysTheWholeWait: a step parked on a read model, found
// stuck, and retried by an operator (which restarts its stuck clock) says
// in its "resumed" history entry that it waited from its park to its run,
// as converge_saga_park_seconds counts it, not only since the retry.
func TestResumedEntrySaysTheWholeWait(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		fx := newFixture(t, mk, setup{gated: true})
		eng := fx.Engine()
		fx.HoldModel(summaryModel)
		fx.Given(placed("1", 30), ev("1", StockReserved{OrderID: "1"}))
		fx.ExpectParked(orders, "1", summaryModel)
		parkedAt := fx.Clock().Now()
		fx.Advance(saga.DefaultStuckAfter + time.Second)
		require.True(t, fx.Instance(orders, "1").Stuck)
		require.NoError(t, eng.Retry(ctx, orders, "1"))
		fx.Advance(time.Minute)
		ranAt := fx.Clock().Now()
		fx.ReleaseModel(summaryModel)
		fx.ExpectCommands(ChargePayment{OrderID: "1", Amount: 30})

		var resumed *saga.HistoryEntry
		for _, h := range fx.History(orders, "1").History {
			if h.Kind == saga.KindResumed {
				resumed = &h
			}
		}
		require.NotNil(t, resumed)
		waited, err := time.ParseDuration(resumed.Waited)
		require.NoError(t, err)
		require.Equal(t, ranAt.Sub(parkedAt), waited, "the resumed entry says the step waited %s; it was parked from %s to %s",
			resumed.Waited, parkedAt.Format(time.TimeOnly), ranAt.Format(time.TimeOnly))
	})
}

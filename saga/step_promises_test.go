package saga_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// newErrsFixture runs s alone on a fixture of store mk.
func newErrsFixture(t *testing.T, mk storeMaker, s saga.Definition) *sagatest.Fixture {
	t.Helper()
	reg := registry()
	cfg := &sagatest.Config{Registry: reg, Sagas: []saga.Definition{s}}
	if mk != nil {
		cfg.Store = mk(t, reg)
	}
	return sagatest.New(t, cfg)
}

// TestQueuedMessagesDrainInOrder: every message that arrives for a parked
// instance queues behind its step, and once the step runs they are applied
// in the order they came, each once.
func TestQueuedMessagesDrainInOrder(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		fx := newFixture(t, mk, setup{gated: true})
		fx.HoldModel(summaryModel)
		fx.When(placed("1", 30), ev("1", StockReserved{OrderID: "1"}))
		fx.ExpectParked(orders, "1", summaryModel)
		for n := range 5 {
			fx.When(ev("1", Ping{OrderID: "1", N: n}))
			require.Equal(t, int64(n+1), fx.Instance(orders, "1").Queued)
		}
		fx.ReleaseModel(summaryModel)
		fx.ExpectCommands(ChargePayment{OrderID: "1", Amount: 30})
		require.Zero(t, fx.Instance(orders, "1").Queued)
		require.Equal(t, []int{0, 1, 2, 3, 4}, sagatest.State[orderState](fx, orders, "1").Pings, "in arrival order, once each")
	})
}

// TestRetryAfterCountsTowardsMaxAttempts: a handler that keeps asking to
// be retried later is run MaxAttempts times, each after the delay it
// asked for, and the instance then fails with its last error instead of
// waiting for ever.
func TestRetryAfterCountsTowardsMaxAttempts(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		attempts := 0
		s := saga.New[orderState]("later", &saga.Config[orderState]{MaxAttempts: 3})
		saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error {
			attempts++
			return saga.RetryAfter(time.Minute)
		})
		fx := newErrsFixture(t, mk, s)
		fx.When(placed("1", 1))
		for want := 1; want < 3; want++ {
			require.Equal(t, want, attempts)
			fx.ExpectStatus("later", "1", saga.StatusParked)
			fx.Advance(59 * time.Second)
			require.Equal(t, want, attempts, "not before the delay asked for")
			fx.Advance(time.Second)
		}
		require.Equal(t, 3, attempts)
		in := fx.Instance("later", "1")
		require.Equal(t, saga.StatusFailed, in.Status)
		require.Contains(t, in.Reason, "Config.MaxAttempts")
		require.Contains(t, in.Reason, "retry the step after 1m0s", "with its last error")
		fx.Advance(time.Hour)
		require.Equal(t, 3, attempts, "a failed instance is not run again")
	})
}

// TestRetriedStepSendsTheSameCommandIDs: a command's id derives from the
// instance and the step, not from the attempt, so a step that failed and
// ran again sends the ids it would have sent the first time: a command
// handler that saw the first attempt's command (a step whose commit
// outcome was unknown) dedupes the second. Two fixtures run the same
// message (same event id); in one the step fails once first.
func TestRetriedStepSendsTheSameCommandIDs(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		run := func(failFirst bool, eventID string) []string {
			failed := false
			s := saga.New[orderState]("ids", nil)
			saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
				if err := st.Send(ReserveStock{OrderID: e.OrderID}); err != nil {
					return err
				}
				if err := st.Send(ChargePayment{OrderID: e.OrderID, Amount: e.Total}); err != nil {
					return err
				}
				if failFirst && !failed {
					failed = true
					return saga.RetryAfter(time.Second)
				}
				return nil
			})
			fx := newErrsFixture(t, mk, s)
			ev := placed("1", 5)
			ev.ID = eventID
			sent := fx.When(ev).Commands()
			sent = append(sent, fx.Advance(time.Second).Commands()...)
			var ids []string
			for _, c := range sent {
				ids = append(ids, c.ID)
			}
			require.Len(t, ids, 2)
			return ids
		}
		eventID := uuid.NewString()
		require.Equal(t, run(false, eventID), run(true, eventID))
		require.NotEqual(t, run(false, eventID), run(false, uuid.NewString()), "another message, other ids")
	})
}

// TestEndingCancelsPendingTimers: Complete and Fail cancel the instance's
// pending timers, so nothing fires into an ended instance.
func TestEndingCancelsPendingTimers(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		fired := 0
		s := saga.New[orderState]("ending", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], _ OrderPlaced) error {
			st.Schedule("reminder", time.Minute)
			st.Schedule("expiry", time.Hour)
			return nil
		})
		saga.On(s, byOrder[PaymentCharged], func(st *saga.Step[orderState], _ PaymentCharged) error {
			st.Complete()
			return nil
		})
		saga.On(s, byOrder[PaymentDeclined], func(st *saga.Step[orderState], e PaymentDeclined) error {
			st.Fail("declined: " + e.Reason)
			return nil
		})
		saga.OnTimeout(s, "reminder", func(*saga.Step[orderState], saga.Timeout) error { fired++; return nil })
		saga.OnTimeout(s, "expiry", func(*saga.Step[orderState], saga.Timeout) error { fired++; return nil })
		fx := newErrsFixture(t, mk, s)
		fx.When(placed("1", 5), placed("2", 5))
		for _, id := range []string{"1", "2"} {
			require.Len(t, fx.Instance("ending", id).Timers, 2)
		}
		fx.When(ev("1", PaymentCharged{OrderID: "1"}), ev("2", PaymentDeclined{OrderID: "2", Reason: "no funds"}))
		fx.ExpectStatus("ending", "1", saga.StatusCompleted)
		fx.ExpectStatus("ending", "2", saga.StatusFailed)
		for _, id := range []string{"1", "2"} {
			require.Empty(t, fx.Instance("ending", id).Timers, "instance %s", id)
			fx.ExpectNoTimer("ending", id, "reminder").ExpectNoTimer("ending", id, "expiry")
		}
		fx.Advance(2 * time.Hour)
		require.Zero(t, fired)
		require.Zero(t, testutil.ToFloat64(fx.Engine().Metrics().TimersStale.WithLabelValues("ending")), "no timer fired into an ended instance")
	})
}

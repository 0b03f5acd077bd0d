package saga_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
)

// TestTimerLoopLearnsOfTimersScheduledElsewhere: a timer scheduled by a
// step in another process wakes this process's timer loop through the
// feed (the step's commit appends), so it fires on time even when the
// process that scheduled it is gone. The safety interval is an hour
// here: only the feed's wake-up can bring the timer within the test.
func TestTimerLoopLearnsOfTimersScheduledElsewhere(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		store := newStore(t, mk)
		def := func() saga.Definition {
			s := saga.New[orderState]("soon", nil)
			saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
				st.Schedule("soon", time.Duration(e.Total)*time.Millisecond)
				return st.Send(ReserveStock{OrderID: e.OrderID})
			})
			saga.OnTimeout(s, "soon", func(st *saga.Step[orderState], _ saga.Timeout) error {
				st.Complete()
				return nil
			})
			return s
		}
		// elsewhere only runs steps; here only runs the timer loop.
		elsewhere, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{def()}})
		require.NoError(t, err)
		here, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{def()}, TimerSafetyInterval: time.Hour})
		require.NoError(t, err)
		step := func(id string, ms int) {
			res, err := store.Append(ctx, "order-"+id, events.AnyVersion, events.Event{Data: OrderPlaced{OrderID: id, Total: ms}})
			require.NoError(t, err)
			envs, err := store.ReadStream(ctx, "order-"+id, res.LastVersion, 1)
			require.NoError(t, err)
			require.NoError(t, drive.Unit(ctx, store, 0, func(ctx context.Context) error { return elsewhere.Handle(ctx, envs[0]) }))
		}
		fired := func() float64 { return testutil.ToFloat64(here.Metrics().TimersFired.WithLabelValues("soon")) }

		// A first timer, due at once, is found by the loop's first look;
		// after firing it, the loop sleeps with nothing due.
		step("1", 1)
		require.NoError(t, here.Start(ctx))
		t.Cleanup(func() { require.NoError(t, here.Stop(context.Background())) })
		require.Eventually(t, func() bool { return fired() == 1 }, 10*time.Second, time.Millisecond)

		// The next one is scheduled elsewhere while the loop sleeps.
		step("2", 200)
		require.Eventually(t, func() bool { return fired() == 2 }, 10*time.Second, time.Millisecond,
			"the feed woke the timer loop for a timer scheduled elsewhere")
	})
}

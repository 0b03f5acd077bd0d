package saga_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

type deadlineState struct {
	Deadline time.Time `json:"deadline"`
	Fired    int       `json:"fired"`
}

// TestTimerRescheduledToTheSameInstantStillFires: a timer listed by the
// timer loop and rescheduled by a step to the same instant before the loop
// fires the listed row (same row key, new generation) is not deleted with
// the old firing: the new generation fires, once, and its handler runs.
func TestTimerRescheduledToTheSameInstantStillFires(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		s := saga.New[deadlineState]("deadlines", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[deadlineState], _ OrderPlaced) error {
			st.State().Deadline = st.Now().Add(time.Hour)
			st.ScheduleAt("deadline", st.State().Deadline)
			return nil
		})
		saga.On(s, byOrder[Ping], func(st *saga.Step[deadlineState], _ Ping) error {
			st.ScheduleAt("deadline", st.State().Deadline) // the same instant, a new generation
			return nil
		})
		saga.OnTimeout(s, "deadline", func(st *saga.Step[deadlineState], _ saga.Timeout) error {
			st.State().Fired++
			return nil
		})
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Sagas = []saga.Definition{s} }})
		fx.When(placed("1", 1))
		listed, err := saga.TimerRows(ctx, fx.Engine())
		require.NoError(t, err)
		require.Len(t, listed, 1)

		fx.When(ev("1", Ping{OrderID: "1", N: 1})) // reschedules under the listed row's key
		fx.Clock().Advance(2 * time.Hour)
		require.NoError(t, saga.FireRow(ctx, fx.Engine(), listed[0])) // the loop fires what it listed
		rows, err := saga.TimerRows(ctx, fx.Engine())
		require.NoError(t, err)
		require.Len(t, rows, 1, "the new generation's row survives the old firing")

		require.NoError(t, fx.Settle()) // fires the new generation
		require.Equal(t, 1, sagatest.State[deadlineState](fx, "deadlines", "1").Fired, "the rescheduled timer fired once")
		rows, err = saga.TimerRows(ctx, fx.Engine())
		require.NoError(t, err)
		require.Empty(t, rows)
	})
}

// TestTimersAtTheEndsOfTimeAreKept: a timer scheduled past what JSON can
// write (after the year 9999, the "never" idiom time.Unix(1<<62, 0)) or
// before year 0 is kept at the bounds JSON can write (the zero time, the
// end of 9999) instead of failing the unit.
func TestTimersAtTheEndsOfTimeAreKept(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		s := saga.New[deadlineState]("ends", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[deadlineState], _ OrderPlaced) error {
			st.ScheduleAt("never", time.Unix(1<<62, 0))
			st.ScheduleAt("long-ago", time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC))
			return nil
		})
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Sagas = []saga.Definition{s} }})
		require.NoError(t, fx.TryWhen(placed("1", 1)), "the step commits")
		fx.ExpectStatus("ends", "1", saga.StatusRunning)
		timers := fx.Instance("ends", "1").Timers
		require.Equal(t, time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC), timers["never"].UTC())
	})
}

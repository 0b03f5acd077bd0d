package saga_test

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TimerOp asks the timers saga to schedule (After, or At when After is
// zero) or cancel one of its timers.
type TimerOp struct {
	OrderID string        `json:"order_id"`
	Name    string        `json:"name"`
	Cancel  bool          `json:"cancel,omitempty"`
	After   time.Duration `json:"after,omitempty"`
	At      time.Time     `json:"at,omitzero"`
}

func (e TimerOp) order() string { return e.OrderID }

var timerNames = []string{"a", "b", "c"}

// timersSaga schedules and cancels as TimerOps say and sends a
// NotifyCustomer naming each timer that fires and its due time.
func timersSaga() *saga.Saga[orderState] {
	s := saga.New[orderState]("timers", nil)
	saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
	saga.On(s, byOrder[TimerOp], func(st *saga.Step[orderState], e TimerOp) error {
		switch {
		case e.Cancel:
			st.Cancel(e.Name)
		case e.After != 0:
			st.Schedule(e.Name, e.After)
		default:
			st.ScheduleAt(e.Name, e.At)
		}
		return nil
	})
	for _, name := range timerNames {
		saga.OnTimeout(s, name, func(st *saga.Step[orderState], to saga.Timeout) error {
			return st.Send(NotifyCustomer{OrderID: st.ID(), Text: fired(to.Name, to.Due)})
		})
	}
	return s
}

func fired(name string, due time.Time) string {
	return name + " due " + due.UTC().Format(time.RFC3339Nano)
}

// TestTimersFireOnceAtTheirLastSchedule schedules, reschedules and
// cancels timers at random, due in the past, soon, far ahead (past the
// year 2262, where nanoseconds since 1970 overflow) or at the zero time,
// and moves the clock at random, also while an op is still in the feed
// (timers firing before the step that replaces them has run). Whatever
// the sequence, each schedule that is still current when its due time comes fires exactly once, at
// that time, and nothing else fires: a rescheduled or cancelled one never
// acts, and Cancel never fails a step.
func TestTimersFireOnceAtTheirLastSchedule(t *testing.T) {
	t.Parallel()
	forEachSeed(t, 30, 4, runTimerOps)
}

func runTimerOps(t *testing.T, mk storeMaker, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 11))
	reg := registry()
	events.Register[TimerOp](reg, "test.timer_op")
	cfg := &sagatest.Config{Registry: reg, Sagas: []saga.Definition{timersSaga()}}
	if mk != nil {
		cfg.Store = mk(t, reg)
	}
	fx := sagatest.New(t, cfg)
	fx.Given(placed("1", 1))

	// The model: each timer's current due time, if it is scheduled.
	active := map[string]time.Time{}
	// due fires, in the model, every timer due by now.
	due := func(now time.Time) []any {
		var out []any
		for name, at := range active {
			if !at.After(now) {
				out = append(out, NotifyCustomer{OrderID: "1", Text: fired(name, at)})
				delete(active, name)
			}
		}
		return out
	}
	far := time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)
	for step := range 25 {
		now := fx.Clock().Now()
		name := timerNames[rng.IntN(len(timerNames))]
		op := TimerOp{OrderID: "1", Name: name}
		switch rng.IntN(7) {
		case 0:
			op.Cancel = true
		case 1:
			op.After = time.Duration(math.MaxInt64) // "never", in practice
		case 2:
			op.At = far.Add(time.Duration(rng.IntN(1000)) * time.Hour)
		case 3:
			op.At = time.Time{} // long past: due at once
		case 4:
			op.After = -time.Duration(1+rng.IntN(60)) * time.Minute
		default:
			op.After = time.Duration(1+rng.IntN(60)) * time.Minute
		}
		// at is the new due time, for a step that runs at stepNow.
		at := func(stepNow time.Time) time.Time {
			if op.After != 0 {
				return stepNow.Add(op.After)
			}
			return op.At
		}
		d := time.Duration(rng.IntN(40)) * time.Minute
		var want []any
		if rng.IntN(3) == 0 {
			// The clock moves while the op is in the feed: timers come due
			// and fire before the op's step has run. The op's timer fired
			// at a generation the op replaces, so it never acts.
			fx.Append(ev("1", op))
			fx.Clock().Advance(d)
			_, err := fx.Engine().FireDue(t.Context())
			require.NoError(t, err)
			delete(active, name)
			want = due(fx.Clock().Now())
			if !op.Cancel {
				active[name] = at(fx.Clock().Now())
			}
			fx.When()
			want = append(want, due(fx.Clock().Now())...)
			require.ElementsMatch(t, want, values(fx.Commands()), "seed %d step %d: %+v racing %s", seed, step, op, d)
			continue
		}
		delete(active, name)
		if !op.Cancel {
			active[name] = at(now)
		}
		fx.When(ev("1", op))
		require.ElementsMatch(t, due(fx.Clock().Now()), values(fx.Commands()), "seed %d step %d: after %+v", seed, step, op)
		fx.Advance(d)
		require.ElementsMatch(t, due(fx.Clock().Now()), values(fx.Commands()), "seed %d step %d: advancing %s", seed, step, d)
	}
	fx.ExpectStatus("timers", "1", saga.StatusRunning)
	timers := fx.Instance("timers", "1").Timers
	require.Len(t, timers, len(active), "seed %d: the timers still scheduled", seed)
	for name, at := range active {
		require.True(t, at.Equal(timers[name]), "seed %d: timer %s due %s, want %s", seed, name, timers[name], at)
	}
}

func values(cmds []sagatest.Command) []any {
	out := make([]any, 0, len(cmds))
	for _, c := range cmds {
		out = append(out, c.Value)
	}
	return out
}

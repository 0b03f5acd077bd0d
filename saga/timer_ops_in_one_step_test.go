package saga_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TimerBatch is several timer ops that one step carries out in order.
type TimerBatch struct {
	OrderID string    `json:"order_id"`
	Ops     []TimerOp `json:"ops"`
}

func (e TimerBatch) order() string { return e.OrderID }

// TestTimerOpsWithinOneStepLeaveEachNamesLastOp guards the promise in
// saga/doc.go's Timers section ("rescheduling or cancelling bumps the
// timer's generation ... a firing whose generation is no longer current
// (cancelled, rescheduled ...) is ignored ... Cancel never fails a step")
// when one step schedules, reschedules and cancels
// the same names several times: what is pending afterwards is each name's
// last op, and only those timers fire, once, at their last due time.
func TestTimerOpsWithinOneStepLeaveEachNamesLastOp(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 23))
		s := saga.New[orderState]("timer_batch", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
		saga.On(s, byOrder[TimerBatch], func(st *saga.Step[orderState], e TimerBatch) error {
			for _, op := range e.Ops {
				if op.Cancel {
					st.Cancel(op.Name)
				} else {
					st.Schedule(op.Name, op.After)
				}
			}
			return nil
		})
		for _, name := range timerNames {
			saga.OnTimeout(s, name, func(st *saga.Step[orderState], to saga.Timeout) error {
				return st.Send(NotifyCustomer{OrderID: st.ID(), Text: fired(to.Name, to.Due)})
			})
		}
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) {
			events.Register[TimerBatch](c.Registry, "order.timer_batch")
			c.Sagas = []saga.Definition{s}
		}})
		rounds := 6
		if mk != nil {
			rounds = 3
		}
		for round := range rounds {
			id := fmt.Sprint("o", round)
			fx.When(placed(id, 1))
			var ops []TimerOp
			pending := map[string]time.Duration{}
			for range 1 + rng.IntN(8) {
				name := timerNames[rng.IntN(len(timerNames))]
				if rng.IntN(3) == 0 {
					ops = append(ops, TimerOp{OrderID: id, Name: name, Cancel: true})
					delete(pending, name)
				} else {
					d := time.Duration(1+rng.IntN(60)) * time.Minute
					ops = append(ops, TimerOp{OrderID: id, Name: name, After: d})
					pending[name] = d
				}
			}
			start := fx.Clock().Now()
			fx.When(sagatest.Event{Stream: "order-" + id, Data: TimerBatch{OrderID: id, Ops: ops}}).ExpectCommands()
			fx.ExpectStatus("timer_batch", id, saga.StatusRunning)
			fx.ExpectTimers("timer_batch", id, pending)
			var want []any
			for name, d := range pending {
				want = append(want, NotifyCustomer{OrderID: id, Text: fired(name, start.Add(d))})
			}
			var got []any
			for range 70 {
				fx.Advance(time.Minute)
				got = append(got, sentFor(fx, id)...)
			}
			require.ElementsMatch(t, want, got, "ops %+v", ops)
		}
	})
}

// sentFor returns the NotifyCustomer commands for id sent since the last Advance.
func sentFor(fx *sagatest.Fixture, id string) []any {
	var out []any
	for _, c := range fx.Commands() {
		if n, ok := c.Value.(NotifyCustomer); ok && n.OrderID == id {
			out = append(out, n)
		}
	}
	return slices.Clip(out)
}

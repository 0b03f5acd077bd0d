package saga_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestAnEndingInstanceCancelsItsTimersInNameOrder: instances that take
// the same messages have the same timeline. The step that ends an
// instance with several timers cancels them in name order, however they
// were scheduled; it once cancelled them in Go's map order, which
// differed from instance to instance and from run to run.
func TestAnEndingInstanceCancelsItsTimersInNameOrder(t *testing.T) {
	t.Parallel()
	names := []string{"e", "b", "f", "a", "d", "c"}
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		s := saga.New[orderState]("timer_order", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], _ OrderPlaced) error {
			for _, n := range names {
				st.Schedule(n, time.Hour)
			}
			return nil
		})
		saga.On(s, byOrder[PaymentCharged], func(st *saga.Step[orderState], _ PaymentCharged) error {
			st.Complete()
			return nil
		})
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Sagas = []saga.Definition{s} }})
		for i := range 8 {
			id := fmt.Sprint(i)
			fx.Given(placed(id, 1), ev(id, PaymentCharged{OrderID: id}))
			var cancelled []string
			for _, h := range fx.History("timer_order", id).History {
				if h.Kind == saga.KindTimerCancelled {
					cancelled = append(cancelled, h.Detail)
				}
			}
			require.Equal(t, slices.Sorted(slices.Values(names)), cancelled, "instance %s", id)
		}
	})
}

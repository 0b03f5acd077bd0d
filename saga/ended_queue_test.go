package saga_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestAnInstanceThatEndsDropsItsQueue: a queued message whose step ends
// the instance (here by Fail, a decision: nothing to retry) leaves the
// messages queued after it ignored, counted and recorded, and the
// instance unblocked: a later message is ignored as for any ended
// instance, not queued behind nothing.
func TestAnInstanceThatEndsDropsItsQueue(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		s := saga.New[orderState]("ender", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
		saga.On(s, byOrder[StockReserved], func(*saga.Step[orderState], StockReserved) error { return nil }, saga.Reads(summaryModel))
		saga.On(s, byOrder[Ping], func(st *saga.Step[orderState], e Ping) error {
			if e.N == 1 {
				st.Fail("the customer gave up")
				return nil
			}
			st.State().Pings = append(st.State().Pings, e.N)
			return nil
		})
		fx := newFixture(t, mk, setup{gated: true, config: func(c *sagatest.Config) { c.Sagas = []saga.Definition{s} }})
		fx.HoldModel(summaryModel)
		fx.When(placed("1", 1), ev("1", StockReserved{OrderID: "1"}))
		fx.ExpectParked("ender", "1", summaryModel)
		fx.When(ev("1", Ping{OrderID: "1", N: 1}), ev("1", Ping{OrderID: "1", N: 2}))
		require.EqualValues(t, 2, fx.Instance("ender", "1").Queued)

		fx.ReleaseModel(summaryModel) // the parked step runs, then Ping 1 fails the instance
		fx.ExpectStatus("ender", "1", saga.StatusFailed)
		require.Zero(t, fx.Instance("ender", "1").Queued, "the queue went with the instance")
		fx.When(ev("1", Ping{OrderID: "1", N: 3}))
		require.Zero(t, fx.Instance("ender", "1").Queued, "a later message is ignored, not queued")
		require.Empty(t, sagatest.State[orderState](fx, "ender", "1").Pings, "no ping applied after the end")
		var notes []string
		for _, h := range fx.History("ender", "1").History {
			if h.Kind == saga.KindIgnored {
				notes = append(notes, h.Detail)
			}
		}
		require.Len(t, notes, 2, "the dropped queue and the later message: %v", notes)
		require.True(t, strings.HasPrefix(notes[0], "1 queued messages ignored"), notes[0])
	})
}

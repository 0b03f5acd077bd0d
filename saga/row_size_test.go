package saga_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestRowsStayWithinTheStoreLimit: whatever the store accepted as an
// event, and whatever a step keeps within the documented limits, the rows
// the engine writes fit the store: a message with large metadata queued
// or parked keeps it out of its row (and is read back whole), JSON
// escapes do not push a row past the limit, and a step registering more
// compensations than an instance holds is refused with the reason. None
// of it fails the delivery's unit, which would halt the partition.
func TestRowsStayWithinTheStoreLimit(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		bigMeta := events.Metadata{Extra: map[string]string{"trace": strings.Repeat("&\"", 300<<10)}}

		t.Run("queued with large metadata", func(t *testing.T) {
			first := true
			s := saga.New[orderState]("meta_q", nil)
			saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error {
				if first {
					first = false
					return saga.RetryAfter(time.Hour)
				}
				return nil
			})
			var seen events.Metadata
			saga.On(s, byOrder[Ping], func(st *saga.Step[orderState], e Ping) error {
				seen = st.Event().Metadata
				st.State().Pings = append(st.State().Pings, e.N)
				return nil
			})
			fx := newErrsFixture(t, mk, s)
			fx.When(placed("1", 1)).ExpectStatus("meta_q", "1", saga.StatusParked)
			_, err := fx.Store().Append(ctx, "order-1", events.AnyVersion, events.Event{Data: Ping{OrderID: "1", N: 7}, Metadata: bigMeta})
			require.NoError(t, err)
			require.NoError(t, fx.TryWhen(), "queueing it does not fail the unit")
			fx.Advance(time.Hour)
			require.Equal(t, []int{7}, sagatest.State[orderState](fx, "meta_q", "1").Pings)
			require.Equal(t, bigMeta.Extra, seen.Extra, "the handler saw the message whole")
		})

		t.Run("parked with large metadata", func(t *testing.T) {
			s := saga.New[orderState]("meta_p", nil)
			saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], _ OrderPlaced) error {
				st.State().OrderID = strings.Repeat("s", 500<<10)
				return nil
			})
			saga.On(s, byOrder[Ping], func(st *saga.Step[orderState], e Ping) error {
				st.State().Pings = append(st.State().Pings, e.N)
				return nil
			}, saga.Reads(summaryModel))
			fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Sagas = []saga.Definition{s} }})
			fx.When(placed("1", 1))
			fx.HoldModel(summaryModel)
			_, err := fx.Store().Append(ctx, "order-1", events.AnyVersion, events.Event{Data: Ping{OrderID: "1", N: 7}, Metadata: bigMeta})
			require.NoError(t, err)
			require.NoError(t, fx.TryWhen(), "parking it does not fail the unit")
			fx.ExpectParked("meta_p", "1", summaryModel)
			fx.ReleaseModel(summaryModel)
			require.Equal(t, []int{7}, sagatest.State[orderState](fx, "meta_p", "1").Pings)
		})

		t.Run("parked payload of characters JSON escapes", func(t *testing.T) {
			s := saga.New[orderState]("escapes", nil)
			saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], _ OrderPlaced) error {
				st.State().OrderID = strings.Repeat("s", 940<<10)
				return nil
			})
			saga.On(s, byOrder[PaymentDeclined], func(*saga.Step[orderState], PaymentDeclined) error { return nil }, saga.Reads(summaryModel))
			fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Sagas = []saga.Definition{s} }})
			fx.When(placed("1", 1))
			fx.HoldModel(summaryModel)
			require.NoError(t, fx.TryWhen(ev("1", PaymentDeclined{OrderID: "1", Reason: strings.Repeat("<", 15<<10)})), "parking it does not fail the unit")
			fx.ExpectParked("escapes", "1", summaryModel)
		})

		t.Run("many small compensations", func(t *testing.T) {
			s := saga.New[orderState]("comps", nil)
			saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
				for range 20_000 {
					if err := st.Compensate(Ping{OrderID: e.OrderID}); err != nil {
						return err
					}
				}
				return nil
			})
			fx := newErrsFixture(t, mk, s)
			require.NoError(t, fx.TryWhen(placed("1", 1)), "the step is refused, not the unit")
			in := fx.Instance("comps", "1")
			require.Equal(t, saga.StatusFailed, in.Status)
			require.Contains(t, in.Reason, "more than the")
		})
	})
}

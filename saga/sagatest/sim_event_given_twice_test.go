package sagatest_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestSimulationDeliversAnEventGivenTwice: an event given twice in
// SimConfig.Events under one id is stored once, as the store is
// idempotent by id, and delivered twice, as a redelivery would be (see
// sagatest.Event.ID): the engine takes the second delivery as the
// duplicate it is and sends its command once.
func TestSimulationDeliversAnEventGivenTwice(t *testing.T) {
	t.Parallel()
	const id = "11111111-1111-1111-1111-111111111111"
	err := sagatest.SimulateSeed(t.Context(), &sagatest.SimConfig{
		Registry: shippingRegistry(),
		Sagas:    func(saga.Store) []saga.Definition { return []saga.Definition{shipping()} },
		Events: []sagatest.Event{
			{Stream: "order-1", Data: Placed{ID: "1"}, ID: id},
			{Stream: "order-2", Data: Placed{ID: "2"}},
			{Stream: "order-1", Data: Placed{ID: "1"}, ID: id},
		},
		Crash: -1, Duplicate: -1,
		Invariants: []sagatest.Invariant{func(v *sagatest.SimView) error {
			if n := len(v.CommandsOf("shipment.request", "1")); n > 1 {
				return fmt.Errorf("order 1: %d shipment requests", n)
			}
			if v.Final {
				return errStop
			}
			return nil
		}},
	}, simSeed(t))
	require.ErrorIs(t, err, errStop)
	require.Equal(t, 2, strings.Count(err.Error(), "saga order.placed "+id[len(id)-8:]),
		"the event given twice is delivered twice:\n%v", err)
	require.Equal(t, 3, strings.Count(err.Error(), "saga order.placed "), "the other event once:\n%v", err)
}

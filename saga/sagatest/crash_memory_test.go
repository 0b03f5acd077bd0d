package sagatest_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestSimulatedCrashLosesWhatHandlersKeptInMemory: a simulated crash is a
// process dying, so what a saga kept in Go memory beside its state is lost
// with it. A saga that remembers a placed order in a map built with its
// definition, and fails the order when the shipment arrives and the map
// does not know it, is broken: some seed crashes between its two steps and
// the invariant that every order completes fails there. Without crashes
// every seed passes, so it is the crash that catches it.
func TestSimulatedCrashLosesWhatHandlersKeptInMemory(t *testing.T) {
	t.Parallel()
	forgot := errors.New("an order did not complete")
	config := func(crash float64) *sagatest.SimConfig {
		return &sagatest.SimConfig{
			Registry: shippingRegistry(),
			Sagas: func(saga.Store) []saga.Definition {
				placed := map[string]bool{} // the bug: kept outside the state
				s := saga.New[struct{}]("forgetful", nil)
				saga.StartOn(s, func(e Placed, _ events.Envelope) string { return e.ID },
					func(st *saga.Step[struct{}], e Placed) error {
						placed[e.ID] = true
						return nil
					})
				saga.On(s, func(e Shipped, _ events.Envelope) string { return e.ID },
					func(st *saga.Step[struct{}], e Shipped) error {
						if !placed[e.ID] {
							st.Fail("never placed")
							return nil
						}
						st.Complete()
						return nil
					})
				return []saga.Definition{s}
			},
			Events: []sagatest.Event{
				{Stream: "order-1", Data: Placed{ID: "1"}, Correlation: "1"}, // one key: delivered in order
				{Stream: "shipment-1", Data: Shipped{ID: "1"}, Correlation: "1"},
			},
			Crash:     crash,
			Duplicate: -1,
			Invariants: []sagatest.Invariant{func(v *sagatest.SimView) error {
				if !v.Final {
					return nil
				}
				tl, err := v.Timeline("forgetful", "1")
				if err != nil {
					return fmt.Errorf("instance 1: %w", err)
				}
				if tl.Info.Status != saga.StatusCompleted {
					return fmt.Errorf("%w: %s (%s)", forgot, tl.Info.Status, tl.Info.Reason)
				}
				return nil
			}},
		}
	}
	caught := 0
	for seed := range uint64(40) {
		require.NoError(t, sagatest.SimulateSeed(t.Context(), config(-1), seed), "without crashes, seed %d", seed)
		if err := sagatest.SimulateSeed(t.Context(), config(0.5), seed); err != nil {
			require.ErrorIs(t, err, forgot, "seed %d", seed)
			caught++
		}
	}
	require.Positive(t, caught, "no seed crashed between the two steps and forgot the placed order")
}

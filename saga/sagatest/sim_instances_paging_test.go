package sagatest_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestSimViewInstancesListsPastOnePage: SimView.Instances lists every
// instance of a saga type, past the 1000 that one Engine.List returns by
// default, so an invariant checking that every order ended sees the one
// that did not, which sorts last.
func TestSimViewInstancesListsPastOnePage(t *testing.T) {
	t.Parallel()
	const n = 1001
	const stuck = "999" // sorts last of "0".."1000"
	s := saga.New[struct{}]("many", nil)
	saga.StartOn(s, func(e Placed, _ events.Envelope) string { return e.ID },
		func(st *saga.Step[struct{}], e Placed) error {
			if e.ID != stuck {
				st.Complete()
			}
			return nil
		})
	evs := make([]sagatest.Event, 0, n)
	for i := range n {
		evs = append(evs, sagatest.Event{Stream: fmt.Sprint("order-", i), Data: Placed{ID: fmt.Sprint(i)}})
	}
	var seen int
	err := sagatest.SimulateSeed(t.Context(), &sagatest.SimConfig{
		Registry: shippingRegistry(),
		Sagas:    func(saga.Store) []saga.Definition { return []saga.Definition{s} },
		Events:   evs,
		Crash:    -1, Duplicate: -1,
		Invariants: []sagatest.Invariant{func(v *sagatest.SimView) error {
			if !v.Final {
				return nil
			}
			list, err := v.Instances("many")
			if err != nil {
				return err
			}
			seen = len(list)
			for _, in := range list {
				if in.Status != saga.StatusCompleted {
					return fmt.Errorf("order %s is %s", in.ID, in.Status)
				}
			}
			return nil
		}},
	}, simSeed(t))
	require.Equal(t, n, seen, "SimView.Instances lists every instance")
	require.ErrorContains(t, err, "order 999 is running")
}

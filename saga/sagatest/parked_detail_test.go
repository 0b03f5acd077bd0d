package sagatest_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestParkedEntryNamesTheModelsBehind: a step that reads two models, one
// held back, parks; its "parked" history entry names the model that is
// behind (and what the step reads), not the one that caught up, while
// Info.Waiting (ExpectParked) lists both models it reads.
func TestParkedEntryNamesTheModelsBehind(t *testing.T) {
	t.Parallel()
	for _, held := range []string{"m", "n"} {
		s := saga.New[struct{}]("two_models", nil)
		saga.StartOn(s, func(e Placed, _ events.Envelope) string { return e.ID },
			func(st *saga.Step[struct{}], e Placed) error { return st.Send(Ship(e)) }, saga.Reads("m", "n"))
		f := sagatest.New(t, &sagatest.Config{
			Registry: shippingRegistry(), Sagas: []saga.Definition{s},
			Models: map[string]sagatest.Model{"m": nil, "n": nil},
		})
		f.HoldModel(held)
		f.When(sagatest.Event{Stream: "order-1", Data: Placed{ID: "1"}})
		f.ExpectParked("two_models", "1", "m", "n")
		var parked []saga.HistoryEntry
		for _, h := range f.History("two_models", "1").History {
			if h.Kind == saga.KindParked {
				parked = append(parked, h)
			}
		}
		require.Len(t, parked, 1)
		require.Equal(t, "read models behind the causal token: "+held+" (it reads m, n)", parked[0].Detail)
	}
}

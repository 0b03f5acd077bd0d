package saga_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestParkedPassGoesOnPastAFailingInstance: a parked instance that cannot
// move on (here its row no longer decodes) makes RunParked report the
// failure, but the pass still runs the parked steps after it: one
// instance never holds up the others.
func TestParkedPassGoesOnPastAFailingInstance(t *testing.T) {
	t.Parallel()
	runs := map[string]int{}
	s := saga.New[struct{}]("again", nil)
	saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[struct{}], e OrderPlaced) error {
		runs[e.OrderID]++
		if runs[e.OrderID] == 1 {
			return saga.RetryAfter(time.Minute)
		}
		st.Complete()
		return nil
	})
	fx := sagatest.New(t, &sagatest.Config{Registry: registry(), Sagas: []saga.Definition{s}})
	for _, id := range []string{"a", "b", "c"} {
		fx.When(sagatest.Event{Stream: "order-" + id, Data: OrderPlaced{OrderID: id, Total: 1}})
		fx.ExpectStatus("again", id, saga.StatusParked)
	}
	ctx := context.Background()
	// "b" sorts between the others; its row stops decoding.
	require.NoError(t, fx.Store().Rows().Put(ctx, "converge.saga", "instances", "again/b", json.RawMessage(`{"status": 5}`), events.Token{}))
	fx.Clock().Advance(time.Minute)
	_, err := fx.Engine().RunParked(ctx)
	require.Error(t, err, "the pass reports the instance it could not move on")
	for _, id := range []string{"a", "c"} {
		require.Equal(t, saga.StatusCompleted, fx.Instance("again", id).Status, "%s ran although b failed", id)
	}
}

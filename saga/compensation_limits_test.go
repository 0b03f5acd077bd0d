package saga_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestCompensationOverTheStoresLimitRefusesTheStepThatRegistersIt: on a
// store whose payload limit is below a compensation, the step registering
// it is refused, as one sending it as a command would be; it is never
// accepted only to refuse the decline that runs it, or the cancel whose
// OnCancel runs it, leaving an instance that can be neither undone nor
// ended. Compensations of random sizes around the limit are refused
// exactly when the store would refuse them; each one registered is sent by
// a decline or a cancel, and each refused instance can still be cancelled.
func TestCompensationOverTheStoresLimitRefusesTheStepThatRegistersIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(randomSeed(t), 7))
	const limit = 4 << 10
	reg := registry()
	ms, err := memstore.New(&memstore.Config{Registry: reg, Limits: events.Limits{MaxPayloadBytes: limit}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ms.Close() })
	s := saga.New[orderState]("bigcomp", nil)
	saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
		return st.Compensate(NotifyCustomer{OrderID: e.OrderID, Text: strings.Repeat("x", e.Total)})
	})
	saga.On(s, byOrder[PaymentDeclined], func(st *saga.Step[orderState], _ PaymentDeclined) error {
		st.RunCompensations()
		st.Fail("declined")
		return nil
	})
	saga.OnCancel(s, func(st *saga.Step[orderState], _ saga.Cancelled) error {
		st.RunCompensations()
		return nil
	})
	fx := sagatest.New(t, &sagatest.Config{Registry: reg, Sagas: []saga.Definition{s}, Store: ms})

	refused, accepted := 0, 0
	for i := range 24 {
		id := fmt.Sprint(i)
		size := limit - 200 + rng.IntN(400)
		comp := NotifyCustomer{OrderID: id, Text: strings.Repeat("x", size)}
		payload, err := json.Marshal(comp)
		require.NoError(t, err)
		// The limit counts the payload as a store can give it back
		// (PostgreSQL puts a space after each ',' and ':').
		counted, err := events.PayloadReadBackSize(payload)
		require.NoError(t, err)
		fx.When(placed(id, size))
		if counted > limit {
			refused++
			info := fx.Instance("bigcomp", id)
			require.Equal(t, saga.StatusFailed, info.Status, "a %d-byte compensation (%d as read back), over the %d-byte limit", len(payload), counted, limit)
			require.Contains(t, info.Reason, "compensation customer.notify")
			require.NoError(t, fx.Engine().Cancel(ctx, "bigcomp", id, "given up"))
			require.NoError(t, fx.Settle())
			fx.ExpectCommands().ExpectStatus("bigcomp", id, saga.StatusCancelled)
			continue
		}
		accepted++
		fx.ExpectStatus("bigcomp", id, saga.StatusRunning)
		want := saga.StatusCancelled
		if rng.IntN(2) == 0 {
			fx.When(ev(id, PaymentDeclined{OrderID: id}))
			want = saga.StatusFailed
		} else {
			require.NoError(t, fx.Engine().Cancel(ctx, "bigcomp", id, "customer called"))
			require.NoError(t, fx.Settle())
		}
		fx.ExpectCommands(comp).ExpectStatus("bigcomp", id, want)
		if want == saga.StatusFailed {
			require.Equal(t, "declined", fx.Instance("bigcomp", id).Reason)
		}
	}
	t.Logf("%d compensations refused, %d accepted and sent", refused, accepted)
}

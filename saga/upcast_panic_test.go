package saga_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
)

// TestPanickingUpcasterFailsItsInstance: an upcaster that panics fails the
// instance it could not bring forward, with ErrStateDecode and the panic
// in the reason, as one that returns an error does; the delivery (and the
// unit other instances share) goes on.
func TestPanickingUpcasterFailsItsInstance(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		b := newBare(t, mk, v1Build("upcast_panic"))
		b.deliver(t, b.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 3}))

		v2 := saga.New[stateV2]("upcast_panic", &saga.Config[stateV2]{
			StateVersion: 2,
			Upcast: map[int]func(json.RawMessage) (json.RawMessage, error){
				1: func(old json.RawMessage) (json.RawMessage, error) {
					fields := strings.Split(string(old), ",")
					return json.RawMessage(fields[3]), nil // the bug: v1 state has one field
				},
			},
		})
		saga.StartOn(v2, byOrder[OrderPlaced], func(*saga.Step[stateV2], OrderPlaced) error { return nil })
		saga.On(v2, byOrder[Ping], func(*saga.Step[stateV2], Ping) error { return nil })
		eng, err := saga.NewEngine(&saga.EngineConfig{Store: b.store, Sagas: []saga.Definition{v2}})
		require.NoError(t, err)
		ping := b.append(t, "order-1", Ping{OrderID: "1", N: 4})
		require.NotPanics(t, func() {
			require.NoError(t, drive.Unit(context.Background(), b.store, 0, func(ctx context.Context) error { return eng.Handle(ctx, ping) }))
		})
		tl, err := eng.Show(context.Background(), "upcast_panic", "1")
		require.NoError(t, err)
		require.Equal(t, saga.StatusFailed, tl.Info.Status)
		require.Contains(t, tl.Info.Reason, saga.ErrStateDecode.Error())
		require.Contains(t, tl.Info.Reason, "the upcaster panicked")
	})
}

package saga_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
)

type interruptedState struct {
	Runs int `json:"runs"`
}

// TestInterruptedStepIsNoAttempt: a step whose delivery ends under it (the
// consumer lost its lease, or the process is stopping) and that fails for
// that reason has not failed: the engine returns the error, so the unit
// rolls back, and the step runs again at the next delivery. Counted as an
// attempt, it would fail the instance, here on its only one.
func TestInterruptedStepIsNoAttempt(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		var interrupt atomic.Pointer[context.CancelFunc]
		s := saga.New[interruptedState]("interrupted", &saga.Config[interruptedState]{MaxAttempts: 1})
		saga.StartOn(s, func(e OrderPlaced, _ events.Envelope) string { return e.OrderID },
			func(st *saga.Step[interruptedState], _ OrderPlaced) error {
				if cancel := interrupt.Swap(nil); cancel != nil {
					(*cancel)()
					// As a read whose statement is cancelled with its delivery.
					return fmt.Errorf("read the stock model: %w", st.Context().Err())
				}
				st.State().Runs++
				return nil
			})
		b := newBare(t, mk, s)
		env := b.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 5})

		// Delivered as a consumer does: the unit commits what the handler
		// left unless it failed, even when the delivery has just ended.
		u, err := b.store.Checkpoints().Begin(context.Background())
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(u.Context(events.ContextWithUnit(context.Background(), u)))
		interrupt.Store(&cancel)
		herr := b.engine.Handle(ctx, env)
		if herr == nil {
			require.NoError(t, u.Commit(context.Background()))
		} else {
			require.NoError(t, u.Rollback(context.Background()))
		}
		require.ErrorIs(t, herr, context.Canceled, "the interrupted step's unit must not commit")

		b.deliver(t, env)
		tl, err := b.engine.Show(context.Background(), "interrupted", "1")
		require.NoError(t, err)
		require.Equal(t, saga.StatusRunning, tl.Info.Status, "the instance is not failed")
		require.JSONEq(t, `{"runs": 1}`, string(tl.Info.State))
	})
}

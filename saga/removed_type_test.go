package saga_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/clocktest"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
)

// TestRemovedSagaTypeStaysAsItIs: a deployment drops a saga type while an
// instance of it runs with a timer. An engine without the type lists the
// instance, fires its timer into an event that nothing consumes, and
// leaves the instance as it was; it refuses to cancel it, having no
// OnCancel handler to run, and an engine with the definition back
// cancels it.
func TestRemovedSagaTypeStaysAsItIs(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		store := newStore(t, mk)
		clock := clocktest.New(time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC))
		legacy := saga.New[orderState]("legacy", nil)
		saga.StartOn(legacy, byOrder[OrderPlaced], func(st *saga.Step[orderState], _ OrderPlaced) error {
			st.Schedule("t", 10*time.Minute)
			return nil
		})
		saga.OnTimeout(legacy, "t", func(st *saga.Step[orderState], _ saga.Timeout) error {
			return st.Send(NotifyCustomer{OrderID: st.ID(), Text: "legacy timeout"})
		})
		old, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{legacy}, Clock: clock})
		require.NoError(t, err)
		now, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{orderSaga(false)}, Clock: clock})
		require.NoError(t, err)
		var pos events.Token
		run := func(eng *saga.Engine) {
			handleNew(t, store, &pos, func(env events.Envelope) error {
				return drive.Unit(ctx, store, 0, func(ctx context.Context) error { return eng.Handle(ctx, env) })
			})
		}
		_, err = store.Append(ctx, "order-1", events.AnyVersion, events.Event{Data: OrderPlaced{OrderID: "1", Total: 1}})
		require.NoError(t, err)
		run(old)
		before, err := now.Show(ctx, "legacy", "1")
		require.NoError(t, err, "Show works without the definition")
		require.Contains(t, before.Info.Timers, "t")

		list, err := now.List(ctx, saga.Filter{Saga: "legacy"})
		require.NoError(t, err)
		require.Equal(t, []saga.Info{before.Info}, list, "listed by an engine without the type")

		clock.Advance(11 * time.Minute)
		n, err := now.FireDue(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n, "its timer fires")
		fired, err := drive.Read(ctx, store, pos, feed.Filter{Types: []string{saga.TimerFiredType}}, 10)
		require.NoError(t, err)
		require.Len(t, fired.Events, 1)
		run(now) // nothing consumes it
		_, err = now.RunParked(ctx)
		require.NoError(t, err)
		after, err := now.Show(ctx, "legacy", "1")
		require.NoError(t, err)
		require.Equal(t, before, after, "the instance stays as it was")
		require.Empty(t, bare{store: store}.commandIDs(t)["customer.notify"], "its timeout never ran")

		require.ErrorIs(t, now.Cancel(ctx, "legacy", "1", "type removed"), saga.ErrUnknownSaga)
		refused, err := now.Show(ctx, "legacy", "1")
		require.NoError(t, err)
		require.Equal(t, before, refused, "the refused cancel changed nothing")
		require.NoError(t, old.Cancel(ctx, "legacy", "1", "type removed"))
		list, err = now.List(ctx, saga.Filter{Saga: "legacy", Status: saga.StatusCancelled})
		require.NoError(t, err)
		require.Len(t, list, 1)
	})
}

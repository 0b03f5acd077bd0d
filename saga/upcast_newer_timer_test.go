package saga_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/internal/clocktest"
	"github.com/converge-es/converge/saga"
)

// TestNewerStateTimerIsHandedBackNotDropped: during a rolling deploy the
// newer build (StateVersion 2) schedules a timer whose OnTimeout only it
// has. The timer fires and the old build (StateVersion 1) takes the
// timer-fired event. The package doc promises that a build older than the
// stored state never acts on the instance: the step is handed back until
// a newer build runs it. The old build instead drops the timer as
// "no OnTimeout handler", and the newer build's timeout never runs.
func TestNewerStateTimerIsHandedBackNotDropped(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		clock := clocktest.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
		store := newStore(t, mk)

		newer := saga.New[stateV2]("rolling", &saga.Config[stateV2]{StateVersion: 2})
		saga.StartOn(newer, byOrder[OrderPlaced], func(st *saga.Step[stateV2], e OrderPlaced) error {
			st.State().AmountCents = e.Total * 100
			st.Schedule("remind", time.Minute)
			return nil
		})
		reminded := 0
		saga.OnTimeout(newer, "remind", func(*saga.Step[stateV2], saga.Timeout) error {
			reminded++
			return nil
		})
		older := saga.New[stateV2]("rolling", &saga.Config[stateV2]{StateVersion: 1})
		saga.StartOn(older, byOrder[OrderPlaced], func(*saga.Step[stateV2], OrderPlaced) error { return nil })

		engN, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{newer}, Clock: clock})
		require.NoError(t, err)
		engO, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{older}, Clock: clock})
		require.NoError(t, err)
		bN, bO := bare{store: store, engine: engN}, bare{store: store, engine: engO}

		bN.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 3})
		var pos events.Token
		handleNew(t, store, &pos, func(env events.Envelope) error { bN.deliver(t, env); return nil })

		clock.Advance(2 * time.Minute)
		n, err := engO.FireDue(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		// The old half of the deploy takes the timer-fired event.
		handleNew(t, store, &pos, func(env events.Envelope) error { bO.deliver(t, env); return nil })

		// The newer build then runs whatever was handed back to it.
		clock.Advance(time.Hour)
		_, err = engN.RunParked(ctx)
		require.NoError(t, err)
		tl, err := engN.Show(ctx, "rolling", "1")
		require.NoError(t, err)
		require.NotContains(t, kinds(tl), saga.KindNoTimeoutHandler, "the old build dropped the newer build's timer")
		require.Equal(t, 1, reminded, "the newer build's OnTimeout(remind) must run once; the old build dropped the timer (status %s, timers %v)", tl.Info.Status, tl.Info.Timers)
	})
}

package saga_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/clocktest"
	"github.com/converge-es/converge/saga"
)

// TestRollbackKeepsMessagesOnlyTheNewerBuildHandles: a newer build
// (StateVersion 2) adds saga.On(PaymentCharged). Its step on an instance
// fails once and parks for a retry, and a second PaymentCharged queues
// behind it. The deploy is rolled back: only the older build (StateVersion
// 1, no PaymentCharged handler) runs. A build older than the stored state
// never acts on it (the package doc: after a rollback the steps wait until
// the newer build is back): the older driver leaves both messages (it
// dropped them as no longer handled), and the newer build, back, runs
// them. With drainPerTurn 1 the newer build leaves the queued one behind
// before the rollback, so the older build meets it at the head of the
// queue instead, with no step parked.
func TestRollbackKeepsMessagesOnlyTheNewerBuildHandles(t *testing.T) {
	t.Parallel()
	for _, drain := range []int{0, 1} {
		t.Run(fmt.Sprintf("drain=%d", drain), func(t *testing.T) {
			t.Parallel()
			rollbackKeeps(t, drain)
		})
	}
}

func rollbackKeeps(t *testing.T, drainPerTurn int) {
	t.Helper()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		clock := clocktest.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
		store := newStore(t, mk)

		newer := saga.New[stateV2]("rollback", &saga.Config[stateV2]{StateVersion: 2, RetryBackoff: time.Second})
		saga.StartOn(newer, byOrder[OrderPlaced], func(st *saga.Step[stateV2], e OrderPlaced) error {
			st.State().AmountCents = e.Total * 100
			return nil
		})
		charged, flaky := 0, true
		saga.On(newer, byOrder[PaymentCharged], func(*saga.Step[stateV2], PaymentCharged) error {
			if flaky {
				flaky = false
				return errors.New("the ledger is down")
			}
			charged++
			return nil
		})
		older := saga.New[stateV2]("rollback", &saga.Config[stateV2]{StateVersion: 1, RetryBackoff: time.Second})
		saga.StartOn(older, byOrder[OrderPlaced], func(*saga.Step[stateV2], OrderPlaced) error { return nil })

		engN, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{newer}, Clock: clock, DrainPerTurn: drainPerTurn})
		require.NoError(t, err)
		engO, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{older}, Clock: clock})
		require.NoError(t, err)
		bN := bare{store: store, engine: engN}

		bN.deliver(t, bN.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 3}))
		bN.deliver(t, bN.append(t, "order-1", PaymentCharged{OrderID: "1"})) // fails once: parked for a retry
		bN.deliver(t, bN.append(t, "order-1", PaymentCharged{OrderID: "1"})) // queued behind it
		tl, err := engN.Show(ctx, "rollback", "1")
		require.NoError(t, err)
		require.Equal(t, saga.StatusParked, tl.Info.Status)
		require.Equal(t, int64(1), tl.Info.Queued)
		if drainPerTurn == 1 {
			// The retry runs, and the pass ends before the queue drains.
			clock.Advance(time.Minute)
			_, err = engN.RunParked(ctx)
			require.NoError(t, err)
			require.Equal(t, 1, charged)
			tl, err = engN.Show(ctx, "rollback", "1")
			require.NoError(t, err)
			require.Equal(t, int64(1), tl.Info.Queued, "the queued message waits for the next turn")
		}

		// Rolled back: only the older build runs, and its driver passes.
		clock.Advance(time.Minute)
		for range 3 {
			_, err = engO.RunParked(ctx)
			require.NoError(t, err)
		}
		tl, err = engO.Show(ctx, "rollback", "1")
		require.NoError(t, err)
		require.Equal(t, 2, tl.Info.StateVersion)

		// The newer build is back.
		clock.Advance(time.Hour)
		for range 3 {
			_, err = engN.RunParked(ctx)
			require.NoError(t, err)
		}
		tl, err = engN.Show(ctx, "rollback", "1")
		require.NoError(t, err)
		require.Equal(t, 2, charged, "the newer build's handler runs on both messages once it is back; history %v", kinds(tl))
		for _, h := range tl.History {
			require.NotEqual(t, saga.KindIgnored, h.Kind, "%s: %s", h.EventType, h.Detail)
		}
	})
}

package saga_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
)

// TestCancelOfAnInstanceWhoseStateDoesNotDecode: an instance whose state
// this build cannot read (an older version with no upcaster) can still be
// cancelled: its OnCancel handler cannot run on that state, so the cancel
// goes on without it and its history says so. State of a newer build is
// another matter: this build refuses the cancel, and an operator's request
// waits for an engine of the newer build instead of being dropped.
func TestCancelOfAnInstanceWhoseStateDoesNotDecode(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		b := newBare(t, mk, v1Build("undecodable"))
		b.deliver(t, b.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 3}))

		ran := 0
		v3 := saga.New[stateV2]("undecodable", &saga.Config[stateV2]{StateVersion: 3})
		saga.StartOn(v3, byOrder[OrderPlaced], func(*saga.Step[stateV2], OrderPlaced) error { return nil })
		saga.OnCancel(v3, func(*saga.Step[stateV2], saga.Cancelled) error { ran++; return nil })
		eng3, err := saga.NewEngine(&saga.EngineConfig{Store: b.store, Sagas: []saga.Definition{v3}})
		require.NoError(t, err)
		require.NoError(t, eng3.Cancel(ctx, "undecodable", "1", "customer left"))
		require.Zero(t, ran, "the handler cannot run on state it cannot read")
		tl, err := eng3.Show(ctx, "undecodable", "1")
		require.NoError(t, err)
		require.Equal(t, saga.StatusCancelled, tl.Info.Status)
		last := tl.History[len(tl.History)-1]
		require.Equal(t, saga.KindCancelled, last.Kind)
		require.Contains(t, last.Detail, "its OnCancel handler did not run")

		// The other way round: an instance started by the v3 build, and an
		// engine of the v1 build.
		placed3 := b.append(t, "order-3", OrderPlaced{OrderID: "3", Total: 3})
		require.NoError(t, drive.Unit(ctx, b.store, 0, func(ctx context.Context) error { return eng3.Handle(ctx, placed3) }))
		old := v1Build("undecodable")
		saga.OnCancel(old, func(*saga.Step[stateV1], saga.Cancelled) error { ran++; return nil })
		eng1, err := saga.NewEngine(&saga.EngineConfig{Store: b.store, Sagas: []saga.Definition{old}})
		require.NoError(t, err)
		require.ErrorContains(t, eng1.Cancel(ctx, "undecodable", "3", "r"), "newer build")
		op, err := saga.NewOperator(&saga.OperatorConfig{Source: b.store})
		require.NoError(t, err)
		require.NoError(t, errOf(op.RequestCancel(ctx, "undecodable", "3", "r")))
		_, err = eng1.RunParked(ctx)
		require.NoError(t, err)
		_, pending, err := op.Pending(ctx, "undecodable", "3")
		require.NoError(t, err)
		require.True(t, pending, "the request waits for an engine of the newer build")
		_, err = eng3.RunParked(ctx)
		require.NoError(t, err)
		tl, err = eng3.Show(ctx, "undecodable", "3")
		require.NoError(t, err)
		require.Equal(t, saga.StatusCancelled, tl.Info.Status, "the newer build took it")
		require.Equal(t, 1, ran, "the newer build ran its handler; the older one ran none")
	})
}

package saga_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
)

// TestCancelAfterARollback guards saga/doc.go (Evolving definitions):
// "After a rollback the steps wait until the newer build is back, or until
// an operator cancels the instance", and how. A newer build (state v2)
// starts instances; the deploy is rolled back, so only the v1 build runs,
// and a message for each instance waits for the newer build. Then, on
// both stores:
//
//   - without an OnCancel handler, a plain cancel ends the instance, by
//     the engine (Engine.Cancel) and by an Operator's request
//     (RequestCancel, carried out at the next parked-step pass);
//   - with one, the default waits: Engine.Cancel is refused with an error
//     that names the override (CancelOptions.SkipOnCancel and
//     `converge sagas cancel --skip-on-cancel`), and RequestCancel stays
//     pending, the instance parked;
//   - with CancelOptions.SkipOnCancel (Engine.CancelWith, and
//     Operator.RequestCancelWith replacing the waiting request) the
//     instance ends cancelled, its history saying that its OnCancel
//     handler did not run, and no build ran the handler. The override
//     skips the handler on state this build can read too.
func TestCancelAfterARollback(t *testing.T) {
	t.Parallel()
	for _, withOnCancel := range []bool{false, true} {
		name := "without_on_cancel"
		if withOnCancel {
			name = "with_on_cancel"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
				ctx := context.Background()
				typ := "rollback_" + name
				ran := 0 // OnCancel handler runs, of either build
				v2 := saga.New[stateV2](typ, &saga.Config[stateV2]{StateVersion: 2})
				saga.StartOn(v2, byOrder[OrderPlaced], func(st *saga.Step[stateV2], e OrderPlaced) error {
					st.State().AmountCents = e.Total * 100
					return nil
				})
				saga.On(v2, byOrder[Ping], func(*saga.Step[stateV2], Ping) error { return nil })
				if withOnCancel {
					saga.OnCancel(v2, func(*saga.Step[stateV2], saga.Cancelled) error { ran++; return nil })
				}
				b := newBare(t, mk, v2)
				for i, id := range []string{"1", "2"} {
					b.deliver(t, b.append(t, "order-"+id, OrderPlaced{OrderID: id, Total: 3 + i}))
				}

				// Rolled back: only the v1 build runs from now on.
				v1 := v1Build(typ)
				saga.On(v1, byOrder[Ping], func(*saga.Step[stateV1], Ping) error { return nil })
				if withOnCancel {
					saga.OnCancel(v1, func(*saga.Step[stateV1], saga.Cancelled) error { ran++; return nil })
				}
				old, err := saga.NewEngine(&saga.EngineConfig{Store: b.store, Sagas: []saga.Definition{v1}})
				require.NoError(t, err)
				handle := func(id string, e any) {
					env := b.append(t, "order-"+id, e)
					require.NoError(t, drive.Unit(ctx, b.store, 0, func(ctx context.Context) error { return old.Handle(ctx, env) }))
				}
				status := func(id string) saga.Status {
					tl, err := old.Show(ctx, typ, id)
					require.NoError(t, err)
					return tl.Info.Status
				}
				for _, id := range []string{"1", "2"} {
					handle(id, Ping{OrderID: id, N: 1})
					require.Equal(t, saga.StatusParked, status(id), "the step waits for the newer build")
				}
				op, err := saga.NewOperator(&saga.OperatorConfig{Source: b.store})
				require.NoError(t, err)

				if !withOnCancel {
					require.NoError(t, old.Cancel(ctx, typ, "1", "rolled back for good"), "nothing needs the state")
					require.Equal(t, saga.StatusCancelled, status("1"))
					require.NoError(t, errOf(op.RequestCancel(ctx, typ, "2", "rolled back for good")))
					_, err = old.RunParked(ctx)
					require.NoError(t, err)
					require.Equal(t, saga.StatusCancelled, status("2"))
					return
				}

				// The default: the handler needs the state, so this build
				// refuses, naming the override, and a request waits.
				err = old.Cancel(ctx, typ, "1", "rolled back for good")
				require.ErrorContains(t, err, "newer build")
				require.ErrorContains(t, err, "CancelOptions.SkipOnCancel")
				require.ErrorContains(t, err, "converge sagas cancel --skip-on-cancel")
				require.Equal(t, saga.StatusParked, status("1"), "a refused cancel changes nothing")
				require.NoError(t, errOf(op.RequestCancel(ctx, typ, "2", "rolled back for good")))
				_, err = old.RunParked(ctx)
				require.NoError(t, err)
				req, pending, err := op.Pending(ctx, typ, "2")
				require.NoError(t, err)
				require.True(t, pending, "the request waits for an engine of the newer build")
				require.False(t, req.SkipOnCancel)
				require.Equal(t, saga.StatusParked, status("2"))

				// The override ends them, without the handler.
				skip := saga.CancelOptions{Reason: "rolled back for good", SkipOnCancel: true}
				require.NoError(t, old.CancelWith(ctx, typ, "1", skip))
				require.NoError(t, errOf(op.RequestCancelWith(ctx, typ, "2", skip)), "replaces the waiting request")
				req, pending, err = op.Pending(ctx, typ, "2")
				require.NoError(t, err)
				require.True(t, pending)
				require.True(t, req.SkipOnCancel, "the request row carries the option")
				_, err = old.RunParked(ctx)
				require.NoError(t, err)
				_, pending, err = op.Pending(ctx, typ, "2")
				require.NoError(t, err)
				require.False(t, pending, "carried out")

				// Started by this build, so its state decodes: the override
				// skips the handler all the same.
				handle("3", OrderPlaced{OrderID: "3", Total: 1})
				require.Equal(t, saga.StatusRunning, status("3"))
				require.NoError(t, old.CancelWith(ctx, typ, "3", saga.CancelOptions{SkipOnCancel: true}))

				for _, id := range []string{"1", "2", "3"} {
					tl, err := old.Show(ctx, typ, id)
					require.NoError(t, err)
					require.Equal(t, saga.StatusCancelled, tl.Info.Status, id)
					last := tl.History[len(tl.History)-1]
					require.Equal(t, saga.KindCancelled, last.Kind, id)
					require.Contains(t, last.Detail, "its OnCancel handler did not run: the operator cancelled without it (SkipOnCancel)", id)
					require.Zero(t, countKind(tl, saga.KindRequestRefused), id)
				}
				require.Zero(t, ran, "no build ran the OnCancel handler")
			})
		})
	}
}

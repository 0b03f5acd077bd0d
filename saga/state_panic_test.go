package saga_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
)

// strictTotal is a state field whose new build stores it as a string; its
// UnmarshalJSON has a bug on the old shape (a JSON number): it panics,
// as a hand-written decoder with an index out of range would.
type strictTotal string

func (s *strictTotal) UnmarshalJSON(b []byte) error {
	if b[0] != '"' {
		panic(fmt.Sprintf("strictTotal: not a string: %s", b))
	}
	*s = strictTotal(b[1 : len(b)-1])
	return nil
}

type stateStrict struct {
	Total strictTotal `json:"total"`
}

// strictBuild is the new build: same saga name and StateVersion, the
// state's field changed shape (a definition change without an upcaster).
func strictBuild(name string) *saga.Saga[stateStrict] {
	s := saga.New[stateStrict](name, &saga.Config[stateStrict]{RetryBackoff: time.Nanosecond, MaxRetryBackoff: time.Nanosecond})
	saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[stateStrict], OrderPlaced) error { return nil })
	saga.On(s, byOrder[Ping], func(*saga.Step[stateStrict], Ping) error { return nil })
	return s
}

// TestStateWhoseDecoderPanicsFailsItsInstance: the events registry turns
// a panicking UnmarshalJSON into an error, and the engine turns a
// panicking upcaster into ErrStateDecode ("not the unit they share with
// others or the driver's goroutine"). A state whose S.UnmarshalJSON
// panicked on the stored shape panicked out of Handle, which the runtime
// retried and then halted the partition at; it fails its instance with
// ErrStateDecode.
func TestStateWhoseDecoderPanicsFailsItsInstance(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		b := newBare(t, mk, v1Build("state_panic"))
		b.deliver(t, b.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 3}))

		eng, err := saga.NewEngine(&saga.EngineConfig{Store: b.store, Sagas: []saga.Definition{strictBuild("state_panic")}})
		require.NoError(t, err)
		ping := b.append(t, "order-1", Ping{OrderID: "1", N: 4})
		require.NotPanics(t, func() {
			require.NoError(t, drive.Unit(context.Background(), b.store, 0, func(ctx context.Context) error { return eng.Handle(ctx, ping) }))
		})
		tl, err := eng.Show(context.Background(), "state_panic", "1")
		require.NoError(t, err)
		require.Equal(t, saga.StatusFailed, tl.Info.Status)
		require.Contains(t, tl.Info.Reason, saga.ErrStateDecode.Error())
	})
}

// TestParkedStepWhoseStateDecoderPanicsFailsItsInstance: a step
// parked for a retry by the old build is run by the new build's driver
// (RunParked, which Start's parked-step goroutine calls with no recover):
// the panicking decoder must fail the instance, not panic out of the
// driver and take the process down.
func TestParkedStepWhoseStateDecoderPanicsFailsItsInstance(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		old := saga.New[stateV1]("state_panic_parked", &saga.Config[stateV1]{RetryBackoff: time.Nanosecond, MaxRetryBackoff: time.Nanosecond})
		saga.StartOn(old, byOrder[OrderPlaced], func(st *saga.Step[stateV1], e OrderPlaced) error {
			st.State().Total = e.Total
			return nil
		})
		saga.On(old, byOrder[Ping], func(*saga.Step[stateV1], Ping) error { return errors.New("downstream unavailable") })
		b := newBare(t, mk, old)
		b.deliver(t, b.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 3}))
		b.deliver(t, b.append(t, "order-1", Ping{OrderID: "1", N: 1})) // parked for a retry
		tl, err := b.engine.Show(context.Background(), "state_panic_parked", "1")
		require.NoError(t, err)
		require.Equal(t, saga.StatusParked, tl.Info.Status)

		eng, err := saga.NewEngine(&saga.EngineConfig{Store: b.store, Sagas: []saga.Definition{strictBuild("state_panic_parked")}})
		require.NoError(t, err)
		require.NotPanics(t, func() { _, _ = eng.RunParked(context.Background()) })
		tl, err = eng.Show(context.Background(), "state_panic_parked", "1")
		require.NoError(t, err)
		require.Equal(t, saga.StatusFailed, tl.Info.Status)
		require.Contains(t, tl.Info.Reason, saga.ErrStateDecode.Error())
	})
}

// loudState is a state whose MarshalJSON panics once a handler has set
// Bad (a bug in a hand-written encoder).
type loudState struct{ Bad bool }

func (s loudState) MarshalJSON() ([]byte, error) {
	if s.Bad {
		panic("loudState: cannot encode")
	}
	return []byte(`{}`), nil
}

// TestStepWhoseStateEncoderPanicsFailsItsInstance: a panicking state
// encoder is the step's failure (a handler panic is retried, then fails
// the instance); it must not panic out of Handle.
func TestStepWhoseStateEncoderPanicsFailsItsInstance(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		s := saga.New[loudState]("state_encode_panic", &saga.Config[loudState]{MaxAttempts: 1})
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[loudState], _ OrderPlaced) error {
			st.State().Bad = true
			return nil
		})
		b := newBare(t, mk, s)
		env := b.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 3})
		require.NotPanics(t, func() {
			require.NoError(t, drive.Unit(context.Background(), b.store, 0, func(ctx context.Context) error { return b.engine.Handle(ctx, env) }))
		})
		requireFailedWith(t, b.engine, "state_encode_panic", "MarshalJSON panicked")
	})
}

// TestPanickingInitialFailsItsInstance: Config.Initial runs in the
// step of a new instance; its panic must not escape Handle either.
func TestPanickingInitialFailsItsInstance(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		s := saga.New[orderState]("initial_panic", &saga.Config[orderState]{MaxAttempts: 1, Initial: func() orderState { panic("no initial state") }})
		saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
		b := newBare(t, mk, s)
		env := b.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 3})
		require.NotPanics(t, func() {
			require.NoError(t, drive.Unit(context.Background(), b.store, 0, func(ctx context.Context) error { return b.engine.Handle(ctx, env) }))
		})
		requireFailedWith(t, b.engine, "initial_panic", "Config.Initial panicked")
	})
}

// requireFailedWith requires instance 1 of name failed, its reason
// containing reason.
func requireFailedWith(t *testing.T, eng *saga.Engine, name, reason string) {
	t.Helper()
	tl, err := eng.Show(context.Background(), name, "1")
	require.NoError(t, err)
	require.Equal(t, saga.StatusFailed, tl.Info.Status)
	require.Contains(t, tl.Info.Reason, reason)
}

// TestCancelOfAStateWhoseDecoderPanics: ops.go promises that "State
// that does not decode ... would make the instance impossible to end: the
// cancel goes on without the handler". With a decoder that panics, the
// cancel panics instead (and an operator's RequestCancel, carried out by
// the driver's pass, would take the process down).
func TestCancelOfAStateWhoseDecoderPanics(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		old := saga.New[stateV1]("state_panic_cancel", nil)
		saga.StartOn(old, byOrder[OrderPlaced], func(st *saga.Step[stateV1], e OrderPlaced) error {
			st.State().Total = e.Total
			return nil
		})
		b := newBare(t, mk, old)
		b.deliver(t, b.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 3}))

		s := strictBuild("state_panic_cancel")
		saga.OnCancel(s, func(*saga.Step[stateStrict], saga.Cancelled) error { return nil })
		eng, err := saga.NewEngine(&saga.EngineConfig{Store: b.store, Sagas: []saga.Definition{s}})
		require.NoError(t, err)
		require.NotPanics(t, func() { err = eng.Cancel(context.Background(), "state_panic_cancel", "1", "operator") })
		require.NoError(t, err)
		tl, err := eng.Show(context.Background(), "state_panic_cancel", "1")
		require.NoError(t, err)
		require.Equal(t, saga.StatusCancelled, tl.Info.Status)
	})
}

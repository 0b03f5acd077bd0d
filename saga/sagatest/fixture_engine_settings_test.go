package sagatest_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// gatedShipping is a saga whose start step reads model m, schedules a
// reminder in an hour and asks for a shipment; the reminder completes it.
func gatedShipping() *saga.Saga[struct{}] {
	s := saga.New[struct{}]("gated", nil)
	saga.StartOn(s, func(e Placed, _ events.Envelope) string { return e.ID },
		func(st *saga.Step[struct{}], e Placed) error {
			st.Schedule("remind", time.Hour)
			return st.Send(Ship(e))
		}, saga.Reads("m"))
	saga.OnTimeout(s, "remind", func(st *saga.Step[struct{}], _ saga.Timeout) error {
		st.Complete()
		return nil
	})
	return s
}

// TestFixtureGateIgnoresEngineGateTimeout: a GateTimeout set through
// Config.Engine (a production value) does not make When wait on
// wall-clock time for a held model: the step parks at once, and runs when
// the model is released. When runs on its own goroutine only so that a
// fixture that does wait fails the test without waiting as long.
func TestFixtureGateIgnoresEngineGateTimeout(t *testing.T) {
	t.Parallel()
	f := sagatest.New(t, &sagatest.Config{
		Registry: shippingRegistry(), Sagas: []saga.Definition{gatedShipping()},
		Models: map[string]sagatest.Model{"m": nil},
		Engine: func(c *saga.EngineConfig) { c.GateTimeout = time.Hour },
	})
	f.HoldModel("m")
	done := make(chan error, 1)
	go func() { done <- f.TryWhen(sagatest.Event{Stream: "order-1", Data: Placed{ID: "1"}}) }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(consistency.DefaultMaxTimeout / 2):
		// The tracker cuts any wait at its MaxTimeout: a fixture that
		// waits returns by then, still far later than one that does not.
		t.Fatal("When waited on wall-clock time (Config.Engine's GateTimeout) for a held model")
	}
	f.ExpectParked("gated", "1", "m")
	f.ExpectCommands()
	f.ReleaseModel("m")
	f.ExpectCommands(Ship{ID: "1"})
}

// TestFixtureKeepsItsClockAndTracker: Config.Engine cannot move the
// engine off the fixture's virtual clock or read-model tracker (its
// timers are due on the virtual clock and fire on Advance, and HoldModel
// parks its steps), and finds the fixture's store in EngineConfig.Store,
// so a wrapper it puts there reaches it (the engine's commands are the
// fixture's to expect).
func TestFixtureKeepsItsClockAndTracker(t *testing.T) {
	t.Parallel()
	reg := shippingRegistry()
	tracker, err := consistency.NewTracker(nil)
	require.NoError(t, err)
	wrapped := false
	f := sagatest.New(t, &sagatest.Config{
		Registry: reg, Sagas: []saga.Definition{gatedShipping()},
		Models: map[string]sagatest.Model{"m": nil},
		Engine: func(c *saga.EngineConfig) {
			require.NotNil(t, c.Store, "the fixture's store, to wrap")
			c.Store, wrapped = wrappedStore{c.Store}, true
			c.Clock, c.Tracker = events.SystemClock{}, tracker
		},
	})
	require.True(t, wrapped)
	f.HoldModel("m")
	f.When(sagatest.Event{Stream: "order-1", Data: Placed{ID: "1"}})
	f.ExpectParked("gated", "1", "m")
	f.ReleaseModel("m")
	f.ExpectCommands(Ship{ID: "1"})
	f.ExpectTimers("gated", "1", map[string]time.Duration{"remind": time.Hour})
	f.Advance(time.Hour)
	f.ExpectStatus("gated", "1", saga.StatusCompleted)
}

// wrappedStore stands for a store wrapper (fault injection, say).
type wrappedStore struct{ saga.Store }

package saga_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/saga"
)

// TestAParkedStepWaitsForTheReadsOfTheBuildThatRunsIt: a step parked by a
// build whose handler read some models is run by a newer build whose
// handler reads others ("changing a handler affects the next step only").
// The driver must wait for, and watch, the models the running build's
// handler reads: the step runs as soon as those reach its token (the
// sweep is an hour away), and a model the new build no longer reads
// does not hold it.
func TestAParkedStepWaitsForTheReadsOfTheBuildThatRunsIt(t *testing.T) {
	t.Parallel()
	const ma, mb = "model_a", "model_b"
	for _, tc := range []struct {
		name     string
		old, new []string
		reach    []string // models moved to the step's token
	}{
		{"model added", []string{ma}, []string{ma, mb}, []string{ma, mb}},
		{"model removed", []string{ma, mb}, []string{ma}, []string{ma}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				store := newStore(t, mk)
				tracker, err := consistency.NewTracker(&consistency.TrackerConfig{})
				require.NoError(t, err)
				def := func(reads []string, ran chan<- string) saga.Definition {
					s := saga.New[orderState]("reads_changed", nil)
					saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
					saga.On(s, byOrder[StockReserved], func(_ *saga.Step[orderState], e StockReserved) error {
						ran <- e.OrderID
						return nil
					}, saga.Reads(reads...))
					return s
				}
				oldRan := make(chan string, 1)
				oldEng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{def(tc.old, oldRan)}, Tracker: tracker, GateTimeout: time.Nanosecond})
				require.NoError(t, err)
				old := bare{store: store, engine: oldEng}
				old.deliver(t, old.append(t, "order-1", OrderPlaced{OrderID: "1"}))
				reserved := old.append(t, "order-1", StockReserved{OrderID: "1"})
				old.deliver(t, reserved)
				require.Equal(t, saga.StatusParked, old.stateInfo(t, "reads_changed", "1").Status)

				// The newer build takes over.
				ran := make(chan string, 1)
				eng, err := saga.NewEngine(&saga.EngineConfig{
					Store: store, Sagas: []saga.Definition{def(tc.new, ran)}, Tracker: tracker, GateTimeout: time.Nanosecond, SweepInterval: time.Hour,
				})
				require.NoError(t, err)
				passes := passSignals(eng)
				require.NoError(t, eng.Start(ctx))
				defer func() { require.NoError(t, eng.Stop(ctx)) }()
				<-passes
				for i, m := range tc.reach {
					tracker.Advance(m, reserved.Token)
					if i == 0 && len(tc.reach) > 1 {
						// The pass the first model's move wakes ends before
						// the next model moves.
						select {
						case <-passes:
						case <-time.After(5 * time.Second):
						}
					}
				}
				select {
				case id := <-ran:
					require.Equal(t, "1", id)
				case <-time.After(20 * time.Second): // the sweep is an hour away
					b := bare{store: store, engine: eng}
					require.FailNow(t, "the parked step did not run although the models its handler reads reached its token",
						"reads now %v (parked reading %v); info %+v", tc.new, tc.old, b.stateInfo(t, "reads_changed", "1"))
				}
			})
		})
	}
}

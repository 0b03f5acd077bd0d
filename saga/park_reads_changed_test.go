package saga_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
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
					if i+1 < len(tc.reach) {
						// The driver watches the next model too, before it
						// moves.
						awaitWaiting(ctx, t, tracker, tc.reach[i+1], 1)
					}
				}
				select {
				case id := <-ran:
					require.Equal(t, "1", id)
				case <-ctx.Done(): // the sweep is an hour away
					b := bare{store: store, engine: eng}
					require.FailNow(t, "the parked step did not run although the models its handler reads reached its token",
						"reads now %v (parked reading %v); info %+v", tc.new, tc.old, b.stateInfo(t, "reads_changed", "1"))
				}
			})
		})
	}
}

// TestAParkedTimeoutWaitsForTheReadsOfTheBuildThatRunsIt: as
// TestAParkedStepWaitsForTheReadsOfTheBuildThatRunsIt, for an OnTimeout
// handler (OnTimeout takes saga.Reads too). A newer build whose timeout
// handler no longer reads model_b must not leave the step waiting on it:
// model_b is retired and never moves again.
func TestAParkedTimeoutWaitsForTheReadsOfTheBuildThatRunsIt(t *testing.T) {
	t.Parallel()
	const ma, mb = "model_a", "model_b"
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		store := newStore(t, mk)
		tracker, err := consistency.NewTracker(&consistency.TrackerConfig{})
		require.NoError(t, err)
		def := func(reads []string, ran chan<- string) saga.Definition {
			s := saga.New[orderState]("timeout_reads_changed", nil)
			saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], _ OrderPlaced) error {
				st.ScheduleAt("expiry", st.Now().Add(-time.Second)) // due at once
				return nil
			})
			saga.OnTimeout(s, "expiry", func(st *saga.Step[orderState], _ saga.Timeout) error {
				ran <- st.ID()
				return nil
			}, saga.Reads(reads...))
			return s
		}
		oldRan := make(chan string, 1)
		oldEng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{def([]string{ma, mb}, oldRan)}, Tracker: tracker, GateTimeout: time.Nanosecond})
		require.NoError(t, err)
		old := bare{store: store, engine: oldEng}
		old.deliver(t, old.append(t, "order-1", OrderPlaced{OrderID: "1"}))
		n, err := oldEng.FireDue(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		// From its stream, not the feed: on PostgreSQL another test's open
		// transaction may hold the feed back for a while.
		var fired events.Envelope
		evs, err := store.ReadStream(ctx, "converge.saga.timer-timeout_reads_changed", 0, 10)
		require.NoError(t, err)
		for _, env := range evs {
			if env.Type == saga.TimerFiredType {
				fired = env
			}
		}
		require.NotEmpty(t, fired.ID, "the timer fired")
		old.deliver(t, fired)
		require.Equal(t, saga.StatusParked, old.stateInfo(t, "timeout_reads_changed", "1").Status, "parked on its reads")

		// The newer build's timeout handler reads model_a only; model_b
		// is retired and stays where it is.
		ran := make(chan string, 1)
		eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{def([]string{ma}, ran)}, Tracker: tracker, GateTimeout: time.Nanosecond})
		require.NoError(t, err)
		tracker.Advance(ma, fired.Token)
		_, err = eng.RunParked(ctx)
		require.NoError(t, err)
		select {
		case id := <-ran:
			require.Equal(t, "1", id)
		default:
			nb := bare{store: store, engine: eng}
			require.FailNow(t, "the parked timeout did not run although model_a, all its handler reads now, reached its token",
				"info %+v", nb.stateInfo(t, "timeout_reads_changed", "1"))
		}
	})
}

// TestAStepParkedByThePreviousReleaseWaitsForTheReadsOfTheBuildThatRunsIt:
// the deploy of this release is itself a deploy that may change a
// handler's Reads. A step parked by the previous release (its parked-index
// row has no "type") reading model_a and model_b, run by this release's
// build whose handler reads model_a only, must not wait on model_b, which
// is retired and never moves again.
func TestAStepParkedByThePreviousReleaseWaitsForTheReadsOfTheBuildThatRunsIt(t *testing.T) {
	t.Parallel()
	const ma, mb = "model_a", "model_b"
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		store := newStore(t, mk)
		tracker, err := consistency.NewTracker(&consistency.TrackerConfig{})
		require.NoError(t, err)
		def := func(reads []string, ran chan<- string) saga.Definition {
			s := saga.New[orderState]("reads_changed_upgrade", nil)
			saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
			saga.On(s, byOrder[StockReserved], func(_ *saga.Step[orderState], e StockReserved) error {
				ran <- e.OrderID
				return nil
			}, saga.Reads(reads...))
			return s
		}
		oldEng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{def([]string{ma, mb}, make(chan string, 1))}, Tracker: tracker, GateTimeout: time.Nanosecond})
		require.NoError(t, err)
		old := bare{store: store, engine: oldEng}
		old.deliver(t, old.append(t, "order-1", OrderPlaced{OrderID: "1"}))
		reserved := old.append(t, "order-1", StockReserved{OrderID: "1"})
		old.deliver(t, reserved)
		require.Equal(t, saga.StatusParked, old.stateInfo(t, "reads_changed_upgrade", "1").Status)

		// The index row as the previous release wrote it: no "type".
		u, err := store.Checkpoints().Begin(ctx)
		require.NoError(t, err)
		rows, err := u.Rows().List(ctx, "converge.saga", "parked", feed.RowQuery{Limit: 100})
		require.NoError(t, err)
		require.Len(t, rows, 1)
		var m map[string]any
		require.NoError(t, json.Unmarshal(rows[0].Value, &m))
		require.Contains(t, m, "type")
		delete(m, "type")
		v, err := json.Marshal(m)
		require.NoError(t, err)
		require.NoError(t, u.Rows().Put(ctx, "converge.saga", "parked", rows[0].Key, v, rows[0].Token))
		require.NoError(t, u.Commit(ctx))

		ran := make(chan string, 1)
		eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{def([]string{ma}, ran)}, Tracker: tracker, GateTimeout: time.Nanosecond})
		require.NoError(t, err)
		tracker.Advance(ma, reserved.Token)
		for range 3 { // sweeps
			_, err = eng.RunParked(ctx)
			require.NoError(t, err)
		}
		select {
		case id := <-ran:
			require.Equal(t, "1", id)
		default:
			b := bare{store: store, engine: eng}
			require.FailNow(t, "the step parked by the previous release still waits on model_b, which its handler no longer reads",
				"info %+v", b.stateInfo(t, "reads_changed_upgrade", "1"))
		}
	})
}

// TestAParkedStepWhoseHandlerTheNewBuildDroppedDoesNotWaitOnRetiredModels:
// a step parked by a build whose handler read model_b is taken by a newer
// build that no longer handles the event at all (resumeOne then ignores
// it: "the saga no longer handles this message"), or whose handler reads
// nothing. model_b is retired and never moves again. Both cases must let
// the step go through; the new build reads no model for it.
func TestAParkedStepWhoseHandlerTheNewBuildDroppedDoesNotWaitOnRetiredModels(t *testing.T) {
	t.Parallel()
	const mb = "model_b"
	for _, tc := range []struct {
		name    string
		handled bool // the new build still handles StockReserved, reading nothing
	}{
		{"reads emptied", true},
		{"handler removed", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				store := newStore(t, mk)
				tracker, err := consistency.NewTracker(&consistency.TrackerConfig{})
				require.NoError(t, err)
				old := saga.New[orderState]("handler_dropped", nil)
				saga.StartOn(old, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
				saga.On(old, byOrder[StockReserved], func(*saga.Step[orderState], StockReserved) error { return nil }, saga.Reads(mb))
				oldEng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{old}, Tracker: tracker, GateTimeout: time.Nanosecond})
				require.NoError(t, err)
				ob := bare{store: store, engine: oldEng}
				ob.deliver(t, ob.append(t, "order-1", OrderPlaced{OrderID: "1"}))
				ob.deliver(t, ob.append(t, "order-1", StockReserved{OrderID: "1"}))
				require.Equal(t, saga.StatusParked, ob.stateInfo(t, "handler_dropped", "1").Status)

				nw := saga.New[orderState]("handler_dropped", nil)
				saga.StartOn(nw, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
				if tc.handled {
					saga.On(nw, byOrder[StockReserved], func(*saga.Step[orderState], StockReserved) error { return nil })
				}
				eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{nw}, Tracker: tracker, GateTimeout: time.Nanosecond})
				require.NoError(t, err)
				for range 3 {
					_, err = eng.RunParked(ctx)
					require.NoError(t, err)
				}
				nb := bare{store: store, engine: eng}
				info := nb.stateInfo(t, "handler_dropped", "1")
				require.NotEqual(t, saga.StatusParked, info.Status,
					"the step still waits on model_b, which this build does not read (it would ignore or run the step at once): %+v", info)
			})
		})
	}
}

// TestAParkedTimeoutWhoseHandlerTheNewBuildDroppedDoesNotWaitOnRetiredModels:
// the same for an OnTimeout handler the newer build dropped (resumeOne
// runs such a firing at once and records "no_timeout_handler").
func TestAParkedTimeoutWhoseHandlerTheNewBuildDroppedDoesNotWaitOnRetiredModels(t *testing.T) {
	t.Parallel()
	const mb = "model_b"
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		store := newStore(t, mk)
		tracker, err := consistency.NewTracker(&consistency.TrackerConfig{})
		require.NoError(t, err)
		start := func(st *saga.Step[orderState], _ OrderPlaced) error {
			st.ScheduleAt("expiry", st.Now().Add(-time.Second))
			return nil
		}
		old := saga.New[orderState]("timeout_dropped", nil)
		saga.StartOn(old, byOrder[OrderPlaced], start)
		saga.OnTimeout(old, "expiry", func(*saga.Step[orderState], saga.Timeout) error { return nil }, saga.Reads(mb))
		oldEng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{old}, Tracker: tracker, GateTimeout: time.Nanosecond})
		require.NoError(t, err)
		ob := bare{store: store, engine: oldEng}
		ob.deliver(t, ob.append(t, "order-1", OrderPlaced{OrderID: "1"}))
		n, err := oldEng.FireDue(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		evs, err := store.ReadStream(ctx, "converge.saga.timer-timeout_dropped", 0, 10)
		require.NoError(t, err)
		require.NotEmpty(t, evs)
		ob.deliver(t, evs[len(evs)-1])
		require.Equal(t, saga.StatusParked, ob.stateInfo(t, "timeout_dropped", "1").Status)

		nw := saga.New[orderState]("timeout_dropped", nil)
		saga.StartOn(nw, byOrder[OrderPlaced], start)
		eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{nw}, Tracker: tracker, GateTimeout: time.Nanosecond})
		require.NoError(t, err)
		for range 3 {
			_, err = eng.RunParked(ctx)
			require.NoError(t, err)
		}
		nb := bare{store: store, engine: eng}
		info := nb.stateInfo(t, "timeout_dropped", "1")
		require.NotEqual(t, saga.StatusParked, info.Status,
			"the firing still waits on model_b, which this build does not read (it has no OnTimeout handler): %+v", info)
	})
}

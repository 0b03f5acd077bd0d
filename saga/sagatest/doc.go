// Package sagatest is the test fixture for sagas: given events, when an
// event, expect commands sent, state, timers scheduled or cancelled, and
// completion, on a virtual clock that jumps to fire timers, with read
// models that can be held back to watch a gated step park and then run on
// caught-up data. Its simulation mode runs the same definitions under
// adversarial delivery over many seeds.
//
// # The fixture
//
//	fx := sagatest.New(t, &sagatest.Config{Registry: reg, Sagas: []saga.Definition{orders}})
//	fx.Given(sagatest.Event{Stream: "order-1", Data: OrderPlaced{OrderID: "1", Total: 30}})
//	fx.When(sagatest.Event{Stream: "order-1", Data: PaymentDeclined{OrderID: "1"}})
//	fx.ExpectCommands(ReleaseStock{OrderID: "1"})
//	fx.ExpectStatus("order_fulfilment", "1", saga.StatusFailed)
//
// The fixture runs the real engine (the same correlation functions,
// storage and timers) on an in-memory store by default, or on the store
// given in Config.Store, so one scenario can run on PostgreSQL too. It
// steps the feed itself, one unit per event, so every expectation holds the
// moment When returns: nothing waits on wall-clock time.
//
// # Simulation
//
// Simulate runs definitions with their command handlers and read models on
// the in-memory store, the handlers on Watermill's cqrs command processor
// over gochannel, and for each seed picks a schedule at random:
//
//   - messages in any order (a command goes to its handler and, when a
//     saga handles its type too, to the engine, as the feed gives it to
//     both), except that those with one correlation id
//     (or, without one, on one stream) stay in feed order, as the engine's
//     feed.ByCorrelation partitions keep them, and commands to a handler
//     stay in order on their stream: an instance's messages under
//     different keys (a
//     start event on its own stream without a correlation id and the
//     replies correlated to the instance, say) may overtake each other;
//   - deliveries repeated (duplicates);
//   - a crash between any two steps: a unit is dropped before its commit
//     and the engine is rebuilt from what the store holds, with its
//     definitions built again (SimConfig.Sagas), so what a handler kept
//     in memory beside its state is lost as in a real crash, be it a
//     delivery's unit or one the engine commits itself when it runs
//     parked steps, retries and queued messages (Engine.RunParked) or
//     fires timers (Engine.FireDue), during the run and while settling;
//   - the virtual clock jumping to the next timer while messages are in
//     flight, so timers race the events that would cancel them;
//   - read models moving forward at their own pace and held back for a
//     while, so gated steps park and resume.
//
// After every action (the parked steps it runs and the timers it fires
// while settling included), and once more when everything has settled
// (all delivered, models caught up, parked steps run, timers and retries
// of failed steps within SimConfig.Horizon fired), it checks the
// invariants you give it. A failing seed (an invariant that returns an
// error, or an invariant or read model that panics) is reported with the
// actions that led to it and the command that replays it: the -seed test
// flag (SeedFlag) runs that seed alone, in each simulation of the test
// whose seeds include it (so the subtest names, and the printed -run
// pattern, pick the simulation that failed, however many the test runs;
// a test none of whose simulations include the seed fails), and the
// package is named by its import path, so the command runs from anywhere
// in its module. An invariant is shown copies of the run's commands and
// events, and SimView.Instances and Timeline refuse a saga type the run
// does not define (a misspelt name would make "every instance" vacuous).
//
//	func TestOrderSimulation(t *testing.T) {
//		sagatest.Simulate(t, &sagatest.SimConfig{
//			Registry:   reg,
//			Sagas:      func(store saga.Store) []saga.Definition { return []saga.Definition{orders} },
//			Commands:   func(store saga.Store) []cqrs.CommandHandler { return handlers(store) },
//			Models:     map[string]sagatest.Model{"order_summary": applySummary},
//			Events:     []sagatest.Event{{Stream: "order-1", Data: OrderPlaced{OrderID: "1"}}},
//			Invariants: []sagatest.Invariant{eachCommandOnce, everyOrderEnded},
//		})
//	}
//
//	go test example.com/shop/orders -run '^TestOrderSimulation$/^seed=17$' -seed 17
//
// (-seed is defined by this package: pass it to packages whose tests
// import it, as the command does by naming the package. Where no go.mod
// is found above the test's directory, the command changes to that
// directory instead.)
//
// A seed fixes the schedule: the same seed replays the same deliveries,
// faults and clock jumps, and the same event ids. An event of
// SimConfig.Events given without an id gets one derived from the seed and
// its place in the list, the engine derives its commands' and timers'
// ids from what caused them, command.Handle its results' from the
// command's, and an event that other code appends without an id, through
// the store the simulation hands it or the unit of its context, gets one
// derived from the seed and how many such events the run appended before.
// What code under test draws itself (an id it makes up, math/rand, the
// wall clock) is not replayed: a seed replays only what handlers decide on
// the events, ids and virtual clock the simulation gives them.
// SimulateSeed runs one seed and returns its error, for use outside a test
// (see its example).
package sagatest

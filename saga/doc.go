// Package saga runs sagas and process managers: long-running processes
// that react to events, keep typed state per instance, send commands,
// wait on timers and compensate, with converge's guarantee that no step
// decides on a read model older than the events that led to it.
//
// # Defining a saga
//
// A saga type has a stable stored name, a state type S (plain JSON) and
// typed handlers, registered like projections.On. The order workflow:
//
//	orders := saga.New[Order]("order_fulfilment", nil)
//	saga.StartOn(orders, func(e OrderPlaced, _ events.Envelope) string { return e.OrderID },
//		func(s *saga.Step[Order], e OrderPlaced) error {
//			s.State().Total = e.Total
//			s.Schedule("payment", 30*time.Minute)
//			if err := s.Compensate(NotifyCustomer{OrderID: e.OrderID, Text: "cancelled"}); err != nil {
//				return err
//			}
//			return s.Send(ReserveStock{OrderID: e.OrderID})
//		})
//	saga.On(orders, func(e StockReserved, _ events.Envelope) string { return e.OrderID },
//		func(s *saga.Step[Order], e StockReserved) error {
//			if err := s.Compensate(ReleaseStock{OrderID: e.OrderID}); err != nil {
//				return err
//			}
//			return s.Send(ChargePayment{OrderID: e.OrderID, Amount: s.State().Total})
//		}, saga.Reads("order_summary"))
//	saga.On(orders, func(e PaymentCharged, _ events.Envelope) string { return e.OrderID },
//		func(s *saga.Step[Order], e PaymentCharged) error {
//			s.Cancel("payment")
//			s.Complete()
//			return s.Send(ShipOrder{OrderID: e.OrderID})
//		})
//	saga.OnTimeout(orders, "payment", func(s *saga.Step[Order], _ saga.Timeout) error {
//		s.RunCompensations() // ReleaseStock, then NotifyCustomer
//		s.Fail("payment timed out")
//		return nil
//	})
//
// # Running it
//
// An Engine runs definitions on a store. Its Handle is a feed.Processor
// handler, partitioned by correlation so one instance's messages stay in
// order in one process, and its Gate is the processor's gate:
//
//	engine, err := saga.NewEngine(&saga.EngineConfig{
//		Store: store, Sagas: []saga.Definition{orders}, Tracker: tracker, Commands: commands,
//	})
//	sagas, err := feed.NewProcessor(store, &feed.ProcessorConfig{
//		Name: "sagas", Types: engine.Types(), Handles: engine.Handles(),
//		Partitions: 8, PartitionKey: engine.PartitionKey(),
//		Gate: engine.Gate, Waiter: tracker,
//	}, engine.Handle)
//	err = sagas.AddHandlers(router) // the router's middleware applies
//	err = engine.Start(ctx)         // the timer loop and the parked-step driver
//	defer engine.Stop(ctx)
//
// Every process running the same definitions mounts the same processor:
// its partitions are shared between the live processes, and a process
// that stops hands its share to the others. While processes of two builds
// share it (a rolling deploy, a rollback), Handles keeps the partitions
// with the build that handles everything the other does: a process of the
// older build stands by rather than take, and drop, an event, a timer
// firing or a state only the newer build handles (converge.NewClient sets
// it). Its parked-step driver stands by with it (EngineConfig.Assigned,
// set to the processor's IsAssigned; converge.NewClient does): it would
// otherwise run the steps and queued messages of blocked instances, drop
// those only the newer build handles, and carry out an operator's cancel
// without the newer build's OnCancel.
//
// The correlation function maps an event to an instance id. StartOn
// starts an instance (or acts on the live one with that id); On acts only
// on live instances. Dispatch is by the decoded Go type (events.Registry),
// so stored aliases of a type reach its handler. Process managers are the
// same thing without compensations.
//
// An event for an instance that does not exist (On) is ignored, counted in
// converge_saga_ignored_total{reason="no_instance"}, logged, and listed by
// Engine.Show under the id it correlated to (until retention purges it);
// Operator.FindIgnored finds them by id alone, in every saga type.
// An event for an ended
// instance (completed, failed by Fail, cancelled) is ignored, counted
// ({reason="ended"}) and recorded in the instance's history. Instance ids
// are never reused: a StartOn event for an ended id starts nothing.
//
// # One unit per step
//
// A step runs in the unit of work of the event that triggered it
// (events.Unit, a transaction on PostgreSQL): the instance row (state with
// its schema version, a version, the causal token, timers with
// generations, compensations), the record that the message was handled,
// the commands, the timer rows and the history entries commit together or
// not at all. All of it lives in feed.Rows (namespace "converge.saga"), so
// no migration beyond the rows table is needed. The instance row keeps
// the state and each compensation's payload as a JSON string holding the
// JSON they encoded to (a '"' or '\' in it takes two bytes there), so that
// every store gives back those very bytes: kept as JSON, PostgreSQL's
// jsonb would give them back reordered, spaced and with numbers written
// out (1e-300 in 304 characters), larger than the step that stored them
// measured, and unlike what memory gives. Rows written by earlier
// releases, which kept them as JSON, are read too. The instance row is read
// with feed.LockUpdate: two steps of one instance never build on the same
// version (PostgreSQL makes the second wait, memory makes it conflict and
// run again). Starting an instance first claims its id (a row written in
// the unit), so two units racing to start one instance are serialised
// too: the second finds the instance and acts on it. A duplicate delivery
// finds the handled record and does nothing.
//
// A consumer that is behind applies many events in one unit. The step at
// its head then reads the instance rows of all of them in one statement
// (feed.Rows.Prefetch, locked as each step would lock its own), and decodes
// each event once for the whole unit: on PostgreSQL the
// steps after it read their instances without a round trip each, and a
// step of an instance the unit already wrote reads its own held write.
// Claiming a new id and reading the instance again after the claim take
// one round trip together. The ids of all the instances the head found
// absent are claimed together, in one statement and in key order, by the
// first message that needs one: two units whose messages claim the same
// ids in other orders (partitions whose streams correlate to the same
// instances) wait for each other instead of deadlocking. Before claiming,
// the unit lock-reads those instances, holding no claim yet: one started
// elsewhere since its head may be locked by a unit about to claim the same
// ids. The instances are read again after the claims: another unit may
// have started one while the steps ahead ran. In the saga benchmark this took a saga from
// about 28 round trips to 20.
//
// Commands are appended as events of command streams (command.StreamFor)
// through the step's unit: converge's feed is the outbox, so a command
// leaves if and only if its step commits, and there is no dispatch to lose
// between the commit and a broker. Their ids derive from the instance id,
// the message that started it, the step's sequence number and their
// index, so a step that runs again after a rollback sends the same ids. They carry the instance id as
// correlation id, the triggering event's id as causation id and the causal
// token (command.MetaCausalToken). The command package runs their handlers
// on Watermill's cqrs command processor. They also name the saga type that
// sent them (command.MetaSender), and so does the command.Rejected a
// refused one becomes: the engine delivers a rejection only to the sender's
// type, so another saga type that handles command.Rejected, with an
// instance of the same id, never takes it for an answer to its own command.
//
// # Consistency-gated steps
//
// A handler that reads read models declares them with Reads. The step
// runs only when each has reached the causal token: the later of the
// triggering event's token and the highest token the instance has seen or
// produced (its own commands included). Engine.Gate computes that for the
// runtime, which waits, push-woken by consistency.Tracker, for a short
// bound before the event's unit begins (with no transaction open); when
// the runtime did not gate, the engine waits itself, also before touching
// the unit. If the models have not caught up, the step is parked: recorded
// durably with what it waits for, and the instance's later messages queue
// behind it in order (mailbox rows), while the consumer moves on to other
// instances. The driver started by Engine.Start runs the parked step when
// the Tracker reports the models caught up (one watch, and one of the
// Tracker's MaxWaiters, per set of models, however many steps are parked
// on it: a model that stays behind does not turn other waits away), with
// a sweep every EngineConfig.SweepInterval for lost wake-ups, then
// drains the mailbox in order, each message in a unit of its own, taking
// turns: after EngineConfig.DrainPerTurn steps of one instance it goes on
// to the next, and comes back at its next pass, at once, so a long queue
// holds up no other instance. A step
// parked longer than Config.StuckAfter is reported stuck (history, metric,
// Engine.List) and still never runs on stale data. Only on positions read:
// a process that starts reads the stored positions of a long-parked step's
// models before calling it stuck, and runs it if they caught up while no
// process ran.
//
// # Timers
//
// Step.Schedule writes a timer row keyed by due time; rescheduling or
// cancelling bumps the timer's generation. The timer loop sleeps until the
// earliest due time (woken early in-process when a step schedules an
// earlier timer, and by feed activity for timers scheduled elsewhere),
// then appends a TimerFired event whose id derives from the instance, the
// timer and its generation, so two processes firing it append it once. The
// instance consumes it like any other message, in order with its other
// messages; a firing whose generation is no longer current (cancelled,
// rescheduled, or the instance ended) is ignored and recorded, by
// construction rather than by racing a delete. Cancel never fails a step.
// A timer that fails to fire is tried again at the next pass and holds up
// no other. One whose event the store refuses for good (its limits were
// lowered after the step that scheduled it; Schedule checks them) runs
// from the instance's rows instead, parked to run at once or queued behind
// the step that blocks the instance, and is recorded ("timer_event_refused"),
// logged and counted (converge_saga_bad_input_total{kind="timer_event_refused"}).
//
// # Failures and bad input
//
// A handler error (or panic) discards the step and parks it for a retry
// (unless the step's context was cancelled under it, by a lost lease or a
// stop: then the unit rolls back and the step runs again, no attempt used)
// after a backoff (Config.RetryBackoff, doubling up to
// Config.MaxRetryBackoff) or after RetryAfter's delay, without holding up
// other instances. After Config.MaxAttempts, or
// at once for Permanent(err), a state that no longer decodes
// (ErrStateDecode; a state newer than the build is not that, see
// Evolving definitions) or a command nobody handles (ErrNoCommandHandler, when
// EngineConfig.Commands is set; counted in
// converge_saga_bad_input_total{kind="no_command_handler"}; a compensation
// is checked in the step that registers it, so that the step running it
// later, a cancel's included, is not refused), or a timer
// scheduled under a name that is empty, longer than MaxTimerNameLength or
// not valid text, or a step whose writes the store would refuse (a
// command, a compensation or the event a timer fires over the store's
// payload limit, the last two checked in the step that registers or
// schedules them; a string holding NUL in the state, a command or a
// compensation; or state and compensations of more than 960 KiB
// together, as the instance row holds them: see One unit per step), the
// instance fails with the reason: its
// later messages queue until Engine.Retry runs the failed step again, or
// Engine.Cancel ends it. A correlation function that returns "" or panics
// makes Handle return an error wrapping ErrCorrelation; an event of a
// handled type that does not decode (a bad payload, or a schema version
// with no upcaster in this build) makes it return the registry's error,
// wrapping events.ErrDecode, before any instance is touched. Both are
// counted at every delivery
// (converge_saga_bad_input_total{kind="correlation"|"decode"}), both are
// logged with the event's id, and the runtime's failure policy retries the event with backoff, then
// halts or dead-letters it with the reason: fix the correlation function,
// the registration or the upcaster, deploy, and let the runtime (or a
// replay of the dead letter) deliver it again. Nothing is dropped
// silently, and nothing retries in a hot loop. What a step writes is
// checked before it changes anything, so a refused step keeps nothing
// (not its other commands either, nor what its handler wrote through its
// unit: that unit is rolled back with ErrStepWroteAndFailed, and the
// instance fails when the message comes again) and never fails its
// message for good, which the runtime would retry and then halt, holding
// up every other instance of
// the partition. Pending timers count against what an instance holds, as
// its state and compensations do; a timer that fired or was cancelled
// leaves nothing in the row. Free text is stored whatever it holds: a
// Fail reason, a Note, the message of an error a step returns, an
// operator's cancel reason and a history entry's detail (a command's
// payload, say) keep NUL as U+FFFD (PostgreSQL cannot store NUL in JSON)
// and are cut at 4 KiB, saying their full size. A step's history is
// written as one row, or as several when it records more than a row holds
// (hundreds of commands, thousands of timers). A parked, failed or queued message
// keeps a payload of up to 16 KiB in its row; a larger one (events may be
// as large as the store's Limits allow, rows hold 1 MiB with the state) is
// read back from its stream when the message runs.
//
// # Operations
//
// Engine.List filters instances by type, status and how long their step
// has been parked; Engine.Show returns the timeline (messages received,
// waits and parks, commands sent, timers, compensations, errors);
// Engine.Retry and Engine.Cancel act on failed and stuck instances. A
// cancel runs the saga's OnCancel handler, when it has one, as a step in
// the cancel's own unit: what the process asked for (a reservation, a
// charge) is undone with the cancel or not at all. A cancel whose step
// would send a command nobody handles (a compensation whose handler a
// redeploy removed after it was registered, say) is refused with
// ErrNoCommandHandler, naming the command: deploy its handler again, then
// cancel. Engine.CancelWith with CancelOptions.SkipOnCancel ends the
// instance without the handler (see Evolving definitions for when only
// that can). Both act only on the
// saga types the engine runs: another service's engine on the same store
// cannot run the handler or the step, so it refuses (ErrUnknownSaga) and
// changes nothing; the Operator's requests reach an engine that runs the
// type.
//
// An Operator does the same without the definitions, from the rows alone:
// `converge sagas list|show|retry|cancel` runs on it. Since only an engine
// that runs a saga type can run its steps (and keep its metrics), the
// Operator's RequestRetry and RequestCancel record a request row that an
// engine running the type carries out at its next parked-step pass (at the
// latest after EngineConfig.SweepInterval), in a unit that also deletes
// the request; a request the instance can no longer take is dropped with
// the reason in its history. Operators in several processes can ask at
// once: each request is checked and recorded with the instance locked, so
// of a retry and a cancel asked together one is recorded and the other
// refused with ErrRequestPending.
//
// Metrics (Engine.Metrics; registered on EngineConfig.Registerer):
//
//   - converge_saga_steps_total{saga,outcome}: steps run; outcome is ok,
//     completed, failed or retry.
//   - converge_saga_parks_total{saga}: steps parked for read models.
//   - converge_saga_gate_waits_total{reached} and the histogram
//     converge_saga_gate_wait_seconds{saga}: waits for read models before
//     a step, and how long they took.
//   - converge_saga_park_seconds{saga}: how long parked steps waited.
//   - converge_saga_stuck_instances{saga}: parked past Config.StuckAfter,
//     as the last parked-step pass found them in the store (so a restarted
//     process reports what was stuck before it started; every process
//     reports the same count, and one standing by for another build 0:
//     aggregate with max).
//   - converge_saga_timers_fired_total{saga}, converge_saga_timers_stale_total{saga}
//     and converge_saga_timers_due: timers fired, fired timers ignored as
//     cancelled or rescheduled, and timers found due at the last pass.
//   - converge_saga_ignored_total{saga,reason}, converge_saga_duplicates_total{saga}
//     and converge_saga_bad_input_total{kind}: messages ignored, duplicate
//     deliveries, and messages that could not be routed or run (or, for
//     kind="timer_event_refused", stored as events).
//   - converge_saga_newer_state_total{saga}: steps handed back because
//     the state was stored at a newer schema version than this build's;
//     it should stop rising once every process runs the newer build.
//   - converge_saga_purged_total{saga,kind}: what retention deleted:
//     ended instances purged (kind="instance") and records of messages
//     ignored for ids with no instance (kind="ignored").
//
// # Retention
//
// Every message an instance takes leaves a handled record (for dedupe) and
// history, so the rows grow with the messages, not the instances. When an
// instance ends (completed, failed for good, cancelled) the step that ends
// it also lists it in an ended index keyed by time. Once
// EngineConfig.Retention has passed (7 days by default; negative keeps
// everything), the driver's sweep (every SweepInterval; Engine.PurgeEnded
// runs it by hand) deletes its handled, history, ignored and mailbox rows
// in short units and rewrites the instance row as a tombstone without
// state or compensations. The tombstone keeps the status, end time, token
// and version, because those are what recognise late messages: a late or
// redelivered message, even the start event, finds an ended instance and
// is ignored, counted and recorded, never starting it again (what it
// writes is purged in turn). The last of those units also deletes the
// instance's claim row, which only serialises concurrent starts of an id
// that has no instance row yet: the tombstone turns every later start
// away by itself. Engine.Show reports Info.Purged and a "purged" history
// entry. Instances that have not ended are never touched.
//
// A message for an id that has no instance (an On handler's, or a timer
// fired for an instance that no longer exists) leaves a record that no
// instance will purge, so its unit also lists it in an ignored index
// keyed by time. Engine.Show lists the record until Retention has passed;
// the same sweep then deletes the record and its index row together, in
// units of one index page. A redelivery rewrites the record at its own
// time with an index row of its own, so the record lives Retention from
// its last delivery. Once an instance with the id has started, the record
// is its own and goes with the instance's history when it is purged.
// A negative Retention keeps every record, indexed as ended instances
// are. Every unit of a sweep is whole, so a sweep that fails or is
// stopped midway leaves nothing the next one cannot finish.
//
// # Testing
//
// Package sagatest runs definitions in tests: a fixture (given events, when
// an event, expect commands, state, timers, parks, on a virtual clock) and
// a simulation mode that runs them with their command handlers and read
// models under duplicates, reordering, crashes, racing timers and lagging
// models over many seeds, checking your invariants.
//
// # Evolving definitions
//
// The state is stored as JSON (its bytes as encoded, see One unit per
// step) with Config.StateVersion; raise it when S
// changes shape and add a Config.Upcast step from the previous version, so
// instances in flight keep running: the upcasters run in order, from the
// stored version up to this build's, and the step stores the result at
// this build's version. A build older than the stored state (the old half
// of a rolling deploy, a rollback) never runs a step on it, nor drops a
// firing of a timer it has no OnTimeout handler for (the newer build
// scheduled it and may have one), and the
// instance does not fail: the step is handed back, parked with a retry
// time that backs off as a failed step's does (Config.RetryBackoff up to
// Config.MaxRetryBackoff) but counts no attempt, so the instance's later
// messages queue behind it in order and other instances go on. Each time
// it records a "waiting_for_newer_build" history entry, logs a warning
// naming the stored version and the one this build knows, and counts
// converge_saga_newer_state_total. The first newer build to take it once
// its retry time has come runs the step, then the queued messages, each
// once. A rolling deploy that raises StateVersion thus needs no manual
// work. After a rollback the steps wait until the newer build is back, or
// until an operator cancels the instance: a parked or queued message the
// older build has no handler for waits too, rather than be ignored as no
// longer handled. A cancel of a saga type without
// an OnCancel handler ends it at once. One with a handler runs the handler
// on the state, which the older build cannot read: by default
// Engine.Cancel refuses it, and an Operator's RequestCancel
// (`converge sagas cancel`) waits for the newer build. To end the
// instance without it, cancel with CancelOptions.SkipOnCancel
// (Engine.CancelWith, Operator.RequestCancelWith,
// `converge sagas cancel --skip-on-cancel`): the handler does not run,
// nothing it would send or undo is, and the instance's history says so.
// Handler code is not replayed, so changing a handler affects the next
// step only. Renaming a Go type is
// safe while its registered name stays. A command type renamed the way
// events.Registry.Alias describes (the new name registered, the old one an
// alias) keeps the compensations instances registered under the old name:
// they are sent, and checked against the command handlers, under the new
// name. Renaming a saga type orphans its
// instances: run the new name beside the old one until the old instances
// end (turn the old type's StartOn into On, or both types start
// instances). Instances of a saga type no engine runs any more stay in the rows
// as they are (listed by Engine.List, their timers fire into events no one
// consumes); cancel them before removing the type. An engine without the
// type refuses to cancel or retry them (ErrUnknownSaga), as it cannot run
// the OnCancel handler or the step: to end them later, run the definition
// again.
//
// # Where this deviates from the first plan
//
// Work is split by the runtime's partitions (feed.Processor partitioned by
// feed.ByCorrelation), not by a mailbox table claimed with FOR UPDATE SKIP
// LOCKED: partitions already keep an instance's messages in order in one
// process, share the work between processes under leases, and add no
// polling; the mailbox exists only behind a parked step. Row locks on the
// instance make a step safe even when two partitions see messages of one
// instance (a starting event partitioned by its stream, later ones by
// correlation).
//
// Commands travel on converge's feed (command streams appended in the
// step's unit), not through watermill-sql's publisher on the step's
// transaction, by measurement: `converge bench --scenario command` takes
// each command from its step's commit to its handler's start in another
// process, at 200 steps a second. The feed, woken by LISTEN/NOTIFY, gave a
// p50 of about 1 ms (p99 under 8 ms) against about 510 ms for
// watermill-sql's subscriber at its default 1 s poll, which can only come
// near by polling every few milliseconds in every process. watermill-sql
// also orders messages by raw transaction id, so a transaction that took
// its id early and committed late delivers its message out of order; the
// feed's horizon does not.
package saga

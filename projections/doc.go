// Package projections builds read models from the event feed, with the
// guarantee converge is about: a read model knows exactly how far it got,
// so a reader holding a consistency token can wait for it, and every
// event's effect lands in it exactly once.
//
// # Definitions
//
// A projection is defined in Go, once, and runs unchanged on PostgreSQL and
// in memory: a stable name, typed handlers for the event types it handles,
// and a consistency class.
//
//	summary := projections.New("order_summary", &projections.Config{
//		Description: "order totals per customer", // SLA defaults to 2s
//	})
//	projections.On(summary, func(ctx context.Context, tx *projections.Tx, env events.Envelope, e OrderPlaced) error {
//		customers := tx.Table("customers")
//		total, _, err := projections.Get[int](ctx, customers, e.Customer)
//		if err != nil {
//			return err
//		}
//		return customers.Put(ctx, e.Customer, total+e.Total)
//	})
//
//	runner, err := projections.NewRunner(&projections.RunnerConfig{
//		Source:      store, // a *pgstore.Store or a *memstore.Store
//		Projections: []*projections.Projection{summary},
//		Tracker:     tracker, // optional: advanced after every commit
//		Catalog:     catalog, // optional: every projection's class and SLA
//	})
//	if err != nil {
//		return err
//	}
//	if err := runner.Start(ctx); err != nil {
//		return err
//	}
//	defer func() { _ = runner.Stop(ctx) }()
//
//	// Readers always read the active generation.
//	total, ok, err := projections.Get[int](ctx, runner.View("order_summary").Table("customers"), "ada")
//
// The handled type's stored name comes from the store's events.Registry,
// so a Go type can be renamed freely while its registered name stays, and
// events stored under an alias of it (events.Registry.Alias) reach the
// same handler: register aliases before Runner.Start, which gives the
// store the stored names its processors (live and rebuilds) read. The projection's name is stored too (rows, checkpoint,
// Tracker entry): renaming a projection starts an empty one that replays
// the feed.
//
// # How projections run
//
// Projections run on converge's consumer runtime (feed.Processor), like
// every other consumer: each projection is a processor named after it,
// mounted on a Watermill router (one of the Runner's own, or yours with
// Runner.AddHandlers). The processor reads the feed filtered in the store
// by the stored names of the types the projection handles, so an event it
// does not handle is never delivered: the checkpoint moves past a run of
// them in one write. Each delivered event runs its handler in a unit of
// work (feed.Unit) whose writes commit together with the checkpoint. A
// processor that is behind applies up to RunnerConfig.CommitBatch (100)
// events in one unit, so catching up costs a commit per hundred events, not
// per event; one that keeps up commits each event at once. On PostgreSQL a
// unit's row writes travel in its commit's round trip (see pgstore), so a
// handler that only writes costs no round trip of its own; a Get of a row
// the unit has not written costs one.
//
// Read models are tables of JSON values by string key (Tx.Table, View),
// stored as the unit's feed.Rows: the rows table on PostgreSQL (migrations
// 0003 and 0004), maps next to a memstore. Everything else a projection
// keeps is rows too: one state row per projection (its active generation,
// the rebuild in progress, the generations being dropped), and the
// runtime's halts and dead letters. The state machine below is therefore
// written once, over feed.Unit and feed.Rows, and behaves the same on both
// stores; the stores' shared suites prove the units and rows underneath.
//
// Progress is recorded once: a generation's position is its processor's
// checkpoint, moved in the unit that applies the events. There is no
// watermark beside it, so a checkpoint moved back (Reset) applies the
// events after it again, which is what Reset is for. What keeps effects
// exactly once is the unit: a handler's writes, the appends it makes
// through its unit (events.UnitFromContext, events.Update) and the
// checkpoint commit together or not at all, fenced by the processor's
// lease, so a crash, a Nack or a lost lease leaves nothing and the event
// comes again. A second run of the same event in the same unit (Watermill's
// Duplicator middleware) is recognised and skipped.
//
// A projection can be split into partitions (Config.Partitions) applied in
// parallel and shared by the processes running it; its position, for the
// Tracker and for token waits, is the lowest of its partitions'
// (consistency.Tracker.Group). Split only projections whose rows are each
// written by the events of one key.
//
// While two builds of an application run a projection side by side (a
// rolling deploy), its partitions go to the processes whose handlers
// cover every event type the others handle (feed.ProcessorConfig.Handles):
// a build that adds a handler takes the projection over and the older one
// stands by, instead of filtering out the new type's events and moving
// the checkpoint past them. A build that adds one type and drops another
// covers neither way: the projection waits until one build's processes
// are gone. Events of a newly handled type stored before the new build
// ran are not applied to the rows in place: Rebuild applies them. A
// standing-by process leaves rebuilds to the build that handles more: it
// takes no rebuild request (RequestRebuild; only a process the live
// processor's partitions go to does, feed.Processor.IsAssigned), runs no
// rebuild's processor and switches no rebuild in, any of which would
// replay or judge the feed by its older handlers; a Rebuild called there
// records the rebuild and waits while the newer build's processes run it.
// So does a process whose live processor runs but whose first membership
// heartbeat has not answered yet; one whose live processor, mounted on
// the application's router (AddHandlers), does not run yet knows of no
// other process and rebuilds as if alone.
//
// A rebuild also records the event types its build handles, so none of
// that hangs on the timing of heartbeats: only processes of a build
// handling the same types run a rebuild and switch it in. One that an
// older build began (it replays the feed without the new types' events)
// is restarted as a new generation by a process of the newer build, and
// whoever waits for it (Rebuild, AwaitRebuild, a request) waits for that
// one. One that a build handling a type this one does not began is left
// to that build; only when it still waits a minute after it began, and
// this process's live processor has the partitions (the other build is
// gone: a rollback), is it restarted with this build's handlers.
//
// Handlers must be deterministic functions of the read model and the
// event, and must not have side effects outside the unit: those would
// happen again on a retry.
//
// # Classes
//
// consistency.Eventual projections (the default) are fed by their
// processor after the events commit. Readers who need their own write wait
// on the write's token (consistency.Tracker), which follows the
// processor's checkpoint under the projection's name.
//
// consistency.Strong projections are also applied inside the append's own
// unit, by an append hook the Runner installs on the store
// (feed.HookedSource): every append through the store or a unit of it
// applies them, a read right after the append sees the rows, and a strong
// handler's error fails the append. Appends that apply one strong
// projection do so one at a time, across processes (each takes the
// projection's lock row until it commits): its handlers read rows and
// write them back, and two appends side by side would both read a row as
// it was, the later commit overwriting the earlier's effect. So a strong
// projection bounds the rate of the appends it handles to one commit at a
// time; keep strong for read models a write must see at once, and make the
// rest eventual. The hook marks the events it applied
// (AppliedMetadataKey), and the projection's processor moves past them
// without applying them again. The hook applies an append only once the
// processor has applied every event before it that it handles (in the
// append's partitions). While it has not (a Reset's replay runs, the
// projection catches up after it was added to a store that already held
// events, events appended without the hook wait for the processor, or it
// is halted on one), the append is refused with ErrStrongCatchingUp and
// nothing is stored: applied at once, it would come before older events
// the processor then applied over it; left to the processor, it would
// miss the handlers' checks. Append again once the projection has caught
// up (a unit's handler is retried by its processor). Appends are applied
// in the order they take the projection's lock, and the hook places each
// append's events after the last one applied (feed.MarkScanner.OrderAfter:
// on PostgreSQL a transaction's events are placed by its id, taken at its
// first write, so a unit that wrote before another began would otherwise
// come first), so the feed has them in the same order. An append made
// without the hook at the same moment by a process that does not run the
// projection, and committed after a strong append, can still land before
// it: append a strong model's events only from processes that run it.
// Token waits still follow the processor's
// checkpoint: a token is reported reached only once every event up to it is
// applied, including events appended without the hook (before the Runner
// started, or by a process that does not run it). Appending in a
// transaction you own (pgstore.Store.AppendTx) runs no hook: append
// strongly projected events through a unit instead. In one process, a
// strong projection runs in one Runner per store object (a second one
// would install a second hook and apply every event twice, so its Start
// refuses); the mark's key is reserved, and feed.Publisher drops it from
// the messages it stores.
//
// # Failures: retries, halts and dead letters
//
// A handler's error (or panic) discards everything its unit wrote and the
// event is tried again after an exponential backoff (BackoffMin to
// BackoffMax). After MaxAttempts the processor's failure policy applies:
//
//   - HaltOnFailure (the default) halts the projection: its checkpoint stays
//     before the event, Status reports StateHalted with the reason, OnHalt is
//     called, and nothing is attempted until Resume. Readers keep reading
//     the last good state.
//   - DeadLetterOnFailure stores the event and the reason in the dead
//     letters (Runner.DeadLetters) in the same unit that moves the
//     checkpoint past it, and carries on. Once the handler is fixed,
//     Runner.RequestReplay has a dead letter applied after all.
//
// Halts are rows, so a projection halted in one process is halted in all
// of them, and a Resume in one (or `converge projections resume`, which
// deletes the rows) reaches the others within StatusPollInterval.
//
// Status.Consumer says how this process's consumer of a projection fares:
// "holding lease" (it delivers), "standing by" (another process does), or
// "degraded since <time>: <error>" while the database is unreachable. It
// needs no database, so Status returns it even when reading the stored
// state fails. Lease changes are reported to the OnLeaseChange of
// RunnerConfig.Subscriber as they happen.
//
// # Rebuild and reset
//
// Runner.Rebuild replays the whole feed into the next generation, beside
// the active one, with a processor of its own ("name@rebuild-N"), while
// readers keep reading the active generation and its processor keeps it
// current. The rebuild's processor runs without a router
// (feed.Processor.Run): a router's cost per event is most of a cheap
// handler's, so RunnerConfig.Middleware does not see rebuild deliveries.
// A rebuild of a single-partition projection also remembers, across its
// units, the rows it wrote and read (up to 100,000): it is the new
// generation's only writer, so while it holds one lease those rows cannot
// change under it, and while that lease's delivery began at the start of
// the feed a row it has not seen does not exist. Each unit then reads from
// the database only rows it has never met.
// The switch is one unit that takes the state row with
// feed.LockUpdate: the live processor, the rebuild and strong appends take
// it with feed.LockShare in each of their units, so on PostgreSQL they wait
// for one another and in memory one of two racing units fails at commit
// and runs again. The switch happens only when the rebuild's position is
// at or past the live processor's and no event the projection handles was
// committed after it (strong appends may have put later events in the live
// rows; partitions move apart, and the position recorded is one for all),
// so the new generation reflects everything the old one does. A known
// limit: under appends of handled events that never pause, that moment
// may not come, and the rebuild runs until they pause (Rebuild's context
// bounds the wait). It records the rebuild's position in the state row: the live processor then
// moves past events up to it without applying them again, whatever its own
// checkpoint, and the old generation's halts and dead letters are cleared
// (the new generation applied their events: a rebuild halts on an event it
// cannot apply). So are those the live processor stores after the switch
// on such an event, having given up on it during its last backoff: each
// monitor pass (RunnerConfig.StatusPollInterval) deletes halts on events
// at or before that position, and the partition delivers again at its
// next halt check, and dead letters of such events once this process
// stored one. After the
// switch the rebuild's processor stops and its checkpoints are deleted (a
// checkpoint nobody moves would lag forever), and the old generation's
// rows are deleted in short transactions of RunnerConfig.DropBatch rows,
// in the background, so a large read model never holds the feed back.
// Readers see the old rows or the new ones, never neither: a read that
// finds nothing checks that its generation is still the active one.
//
// Runner.Reset moves a projection's checkpoint back to a token, so the
// events after it are applied again over the current rows. It is for
// upsert-style handlers (a row holds the latest state of something), and
// readers see rows step back through older states while it replays; for
// anything else use Rebuild. The projection's processor in the runner is
// paused for it (feed.Processor.Pause), not stopped: it gives its leases
// back for the reset to take, and stays where it is mounted, so a
// projection on your router (Runner.AddHandlers) keeps its handler there
// and goes on through your middleware. Reset needs the lease of every
// partition of the projection, and fails with feed.ErrLeaseHeld while
// another process holds one: stop the projection there first, or request
// the reset (RequestReset, below), which the processes running the
// projection make together.
//
// # Requests from other processes
//
// Rebuild and Reset need the projection's handlers, which an operator's
// tool does not have. RequestRebuild and RequestReset record a request in
// the store's rows (RequestsTable), with nothing but a feed.Source; every
// running Runner looks for requests on each pass of its monitor
// (StatusPollInterval) and one that has the projection carries it out: a
// rebuild is started in one unit with the request's state, and the request
// is done once the new generation is active; a reset is taken in a unit
// (so one runner makes it) and made as by Reset, which needs the lease of
// every partition of the projection. Every runner that has the projection
// takes part in a reset request: while it is pending or running, each
// pauses its processor of the projection, giving its leases back, so the
// runner that takes it can take them all, also when the projection's
// partitions are shared among processes and none holds them all; once the
// request is done or failed, they deliver again. The runner that takes it
// waits a few lease TTLs for the leases, else leaves the request pending
// to try again; one that died holding it leaves it running until its claim
// is stale (two minutes), when another takes it over. Requests and their
// outcome stay readable (ReadRequest) until the next request replaces
// them. Dead letters are replayed the same way, by the processor holding
// the dead letter's partition: Runner.RequestReplay records the request for
// a DeadLetter that Runner.DeadLetters listed (feed.RequestReplay, with the
// key "<checkpoint>/<event id>", for a tool without the projections).
// `converge projections` and `converge dead-letters` are built on these.
//
// # On PostgreSQL
//
// While a unit runs, its transaction holds the feed's read horizon back for
// every consumer in the cluster (see pgstore): keep handlers short, and
// never wait inside one (the runtime's gate waits before the unit begins).
// Run `converge migrate` first.
package projections

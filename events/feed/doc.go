// Package feed turns converge's global event order into Watermill messages.
//
// A Source (memstore.Store or pgstore.Store) offers the feed: every stored
// event in one gap-free global order, read through a Filter, a wake-up
// signal for new events, durable leased checkpoints, units of work and
// Rows. On top of it:
//
//   - Subscriber is a Watermill message.Subscriber. Each Subscribe call runs a
//     consumer that delivers events one at a time in global order and moves
//     its checkpoint when a message is Acked. The handler's writes and the
//     checkpoint commit in one unit of work (events.UnitFromContext and
//     Unit.Rows on both stores; on PostgreSQL one transaction, also reached
//     with pgstore.TxFromContext(msg.Context())), so a projection updated
//     through it is exactly as far as its checkpoint says. A Nack rolls the
//     writes back and delivers the same event again after a backoff.
//     Processes running the same consumer name elect one deliverer through
//     a lease; the others stand by and take over.
//   - Publisher is a Watermill message.Publisher that appends each message as
//     an event, so Watermill handlers and cqrs buses can write to the store.
//
// Topics: TopicAll ("$all", or "") is the whole feed; any other topic is a
// category, the streams named topic or starting with topic + "-" (read
// with Filter{Categories: []string{topic}}). A
// Publisher appends to the stream named by the topic (or by the MetaStreamID
// metadata), so a Subscriber of the same topic receives it.
//
// Delivered messages carry the event in their metadata (MetaStreamID,
// MetaVersion, MetaType, MetaToken, ...); TokenFromMessage and
// EnvelopeFromMessage give it back typed. The event's Extra metadata rides
// along, an Extra key named like one of those under MetaExtraPrefix, so it
// never stands in for the event's own value and comes back as stored.
//
// A projection on the Watermill router:
//
//	sub, err := feed.NewSubscriber(store, &feed.SubscriberConfig{ConsumerName: "orders-projection"})
//	if err != nil {
//		return err
//	}
//	router.AddConsumerHandler("orders-projection", "order", sub, func(msg *message.Message) error {
//		env, err := feed.EnvelopeFromMessage(msg)
//		if err != nil {
//			return err
//		}
//		placed, err := events.DecodeAs[OrderPlaced](store.Registry(), env)
//		if err != nil {
//			return err
//		}
//		tx, err := pgstore.TxFromContext(msg.Context())
//		if err != nil {
//			return err
//		}
//		_, err = tx.Exec(msg.Context(), `INSERT INTO orders (id, amount) VALUES ($1, $2)`, placed.OrderID, placed.Amount)
//		return err // nil: Ack, the row and the checkpoint commit together
//	})
//
// # Units of work
//
// A Unit (CheckpointStore.Begin) gathers a handler's appends (it is an
// events.Store, and events.Update joins the unit its context carries), its
// row writes and the checkpoint moves given to Commit, and makes them take
// effect together or not at all. Both stores give it the same semantics,
// which the shared suites check:
//
//   - Appends get their final versions and tokens at once, but become
//     readable only at the commit; until then the unit's first token holds
//     every reader back, so nobody passes an event that may still commit
//     (PostgreSQL: the open transaction holds the read horizon; memory: the
//     reserved token does). Keep units short for that reason.
//   - Other appenders to a stream the unit appended to wait until it ends,
//     then see its events (or none, after a rollback).
//   - A commit is fenced by each move's lease generation (ErrLeaseLost,
//     nothing written), and a consumer's also by the position its unit
//     began at (Move.From): when a commit's reply is lost after the server
//     committed it, the consumer's next unit over the same events finds
//     the checkpoint moved and fails, and the consumer takes its lease
//     again from the stored checkpoint instead of applying them twice. Rows read with a lock are protected: PostgreSQL
//     makes the other unit wait, memory fails the later commit with
//     ErrConflict, so run the work again; either way no update is lost.
//   - A duplicate of an event id another open unit holds fails the unit
//     once that unit commits: it can only roll back (PostgreSQL makes it
//     wait for the holder, and lets it through if the holder rolls back;
//     memory cannot wait and fails it at once). The unit's own events
//     appended again return their result. A duplicate of a committed event is refused
//     (ErrDuplicateEvent) before anything is written, and the unit goes on.
//   - Hand a unit's tokens to readers from AfterCommit, never before.
//
// Never wait for a read model inside a unit (consistency.Tracker refuses):
// the unit would hold the feed back while the read model it waits for
// needs the feed to move.
//
// # Rows
//
// Rows is key-value storage beside the events for read models and
// converge's own bookkeeping, so they commit in the unit that caused them.
// Keys sort byte-wise; List pages by prefix and After, in either
// direction; DeleteNamespace drops a namespace in batches, each its own
// short transaction, so dropping a large read model never holds the feed
// back. Addresses and values are checked before they reach storage
// (ErrInvalidRow): no NUL or control characters (events.IsControl, C1
// controls and U+2028/U+2029 included), bounded lengths, JSON values. Every character is literal: prefixes are compared, never
// pattern-matched.
//
// # Filters and partitions
//
// A Filter keeps events by stored type name, by category (the stream id is
// the category or starts with category + "-", compared as plain strings) and
// by partition. The store applies it (in SQL on PostgreSQL), and reports in
// Batch.ScannedTo how far it looked, so a consumer moves past events it
// does not handle with one CheckpointStore.Advance instead of a unit per
// event, and a lag monitor sees it caught up.
//
// A Partition splits the feed by a key's hash (PartitionOf: the MD5 formula
// PostgreSQL computes in SQL as well, so both stores place every event in
// the same partition): by stream, a stream's events stay in order in one
// partition; by correlation id, a whole business process does. Every event
// is in exactly one partition of a count, so N consumers of partitions 0..N-1
// together see the feed once: a Processor splits itself that way, and a
// Subscriber delivers one partition of its topic with
// SubscriberConfig.Partition.
//
// The partitions of one consumer in one process read the feed together
// (SharedReads): every commit wakes them all, and each reading the store
// for itself cost a statement per partition per wake-up, nearly all of
// them finding nothing of their own. One of them reads the filter without
// the partition and each takes its share in Go; the others are answered
// from that read as long as no wake-up fired since it began and it covers
// their position, so none misses an event or sleeps through one. In the
// saga benchmark on PostgreSQL at 8 partitions this took the round trips
// per saga from 43–47 to 33 and doubled the rate. Processor does this for
// its partitions, and the command package for its partitioned handlers.
//
// CheckpointStore.Heartbeat and Leave keep a
// group's membership (rows with an expiry, not session locks, which outlive
// a dead holder on a pooled connection) for runtimes that share partitions
// between processes. Both stores also implement MembershipWatcher: a
// processor announces its group when it joins, leaves or gives a partition
// up to another member, and the group's processes in every process act on
// it at once, so a deploy that starts or stops a process moves partitions
// in a few round trips, not at the next heartbeat. A process that dies
// announces nothing: its share moves when its leases expire.
//
// Two builds of an application may run one processor side by side (a
// rolling deploy, a rollback) with different handlers. Each process
// records what it handles (its filter and ProcessorConfig.Handles) beside
// its membership, and the partitions go only to the processes that handle
// everything any live one does: an older process stands by (and says so)
// instead of filtering out, or acking unknown, an event only the newer
// build handles, which would move the shared checkpoint past it for good.
//
// # Processors
//
// A Processor is the consumer runtime the projections, sagas and command
// handlers share: partitions split between the live processes, a gate
// before the unit, retries, halts and dead letters. It mounts on a
// Watermill router (AddHandlers), one handler per partition, so router
// middleware sees every event; or Run delivers straight to its handler,
// without a router. A router costs a message, a goroutine and two channel
// hand-offs per event, most of what a cheap handler costs, so bulk work
// such as a projection's rebuild uses Run. A processor delivers one of
// the two ways, once: when its router closes or Run returns it stops,
// leaving its membership group so the other processes take its
// partitions over at once (at their next membership heartbeat, every
// RenewInterval, a third of LeaseTTL by default, on a source that does not
// announce membership changes) rather than after a lease TTL, and
// delivering again takes a new Processor.
// A unit cannot undo part of itself, so once a handler call for an event
// fails in a unit, a retry middleware's next call for it there runs
// nothing and returns ErrUnitFailed: the unit rolls back and the event
// comes again in a new one, under the processor's attempts and backoff.
// Close stops it likewise on a router that goes on running (one with
// other handlers): it returns once its partitions have given their
// leases back. Pause stops delivery for a while without stopping the
// processor or ending its router subscriptions: while it lasts the
// leases are free (a projection's reset moves the checkpoints then), and
// once it ends the partitions deliver again from their checkpoints.
//
// A consumer that is behind applies up to CommitBatch already-read events
// in one unit and commits them together; one that keeps up commits each
// event as it comes. A failure behind a unit's head rolls the unit back;
// the events before the failing one are then committed by themselves and
// the failing one heads a unit of its own, where its failures count.
// UnitEvents gives a handler every event of its unit, so the one at the
// head can read the rows all of them need in one round trip
// (Rows.Prefetch) instead of each reading its own: the sagas' instances
// and the command handlers' earlier results are read that way.
//
// Behind a unit's head, the unit's transaction is open: on PostgreSQL it
// may hold a transaction id, and with it the read horizon of every consumer
// of the database. Middleware or a handler that waits (a throttle, an
// injected delay) must therefore wait only at the head (UnitIndex 0, before
// anything begins the transaction) and return ErrCut behind it, or wait in
// the processor's Gate, which does this itself.
//
// # Append hooks
//
// A HookedSource runs AppendHooks inside appends: strong projections update
// their rows in the append's own unit (an append outside any unit gets one
// of its own when a hook wants it). A failing hook undoes the append and its
// own writes only; the unit it ran in stays usable.
//
// # Delivery guarantees
//
// Delivery is at least once and in global order: the next event is not
// delivered before the current one is Acked. Writes made through the unit
// (its Append and Rows, or pgstore.TxFromContext) take effect exactly once,
// because they commit with the checkpoint, a consumer that lost its lease
// cannot commit (fencing), and a unit commits only over the checkpoint it
// began at (a commit whose reply was lost is not applied again). Side effects outside the unit (HTTP calls,
// another database) may happen again and must be idempotent.
//
// The consumer waits for new events on Source.Wake, with three documented
// polls: FallbackPollInterval while push is unhealthy, SafetyPollInterval
// always (a wake-up is lost when a writer dies between its commit and its
// notification), and a short backoff while Batch.Pending says events are
// committed but held back by an older open transaction.
//
// # Halts, dead letters and replays
//
// A Processor that gives up on an event (MaxAttempts failures) halts the
// partition or dead-letters the event, as rows in RuntimeNamespace
// (HaltsTable, keyed by checkpoint name; DeadLettersTable, keyed by
// "<checkpoint name>/<event id>"), so every process and the CLI see them.
// A record keeps the handler's error as a row can hold it (NUL as U+FFFD,
// at most 4 KiB in all, a longer one cut with a note of its full size),
// and an event too large for a dead letter's row halts
// the partition instead, saying so: giving up always leaves a record.
// Deleting a halt row resumes the partition wherever it runs
// (Processor.Resume does). Replaying a dead letter needs its handler, so
// RequestReplay only records a request (ReplaysTable); the process holding
// the partition's lease finds it within ReplayCheckInterval and, on the
// partition's delivery goroutine, applies the event through the handler in
// a unit of its own that also deletes the dead letter and the request and
// commits the checkpoint where it is, fenced by the lease: a process that
// lost the partition cannot commit a replay. A replay whose handler fails
// leaves the dead letter and records the error in the request
// (ReadReplay); one whose gate cannot tell (its read failed) is tried
// again at the next sweep, since that says nothing of the event. A dead
// letter recorded before a change of partition count keeps its old key;
// the partition its event belongs to under the new count replays it.
//
// # Leases and failover
//
// Processes running the same consumer share one lease; the holder renews it
// every RenewInterval, the others try to take it as often. When the holder
// dies, a standby takes over once the lease expires: measured with kill -9,
// between about 2/3 and 4/3 of LeaseTTL (see SubscriberConfig.LeaseTTL).
// A holder that is frozen rather than dead (a stopped VM, a long pause)
// keeps its open transaction, and with it the feed, until it wakes.
//
// Subscriber.Status says, without asking the Source, whether each consumer
// holds its lease or stands by, and whether calls to the Source are
// failing (degraded since when, with the last error), with counts of lease
// events; SubscriberConfig.OnLeaseChange reports every acquisition, loss and
// release as it happens.
//
// Checkpoint names: CheckpointName(ConsumerName, topic) is ConsumerName for
// the whole feed and ConsumerName + "/" + topic for a category, so one
// Subscriber may follow several topics, each with its own position. Renaming
// a consumer (or changing its topic) starts it from the beginning of the feed.
package feed

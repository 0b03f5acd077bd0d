// Package pgstore is converge's PostgreSQL event store (pgx/v5): streams with
// optimistic concurrency, a gap-free global order, consistency tokens, durable
// consumer checkpoints, and LISTEN/NOTIFY wake-ups for the global feed.
//
//	store, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: "converge", Registry: reg})
//	res, err := store.Append(ctx, "order-42", events.NoStream, events.Event{Data: OrderPlaced{...}})
//	// res.Token is the consistency token of the write.
//
// # Append outcomes
//
// Append fixes its events' ids, then retries transient failures
// (events.ErrUnavailable: connection refused or lost, server restarting or
// overloaded) within Config.AppendRetry. Appends are idempotent by event
// id: the append statement checks for the ids first, so an attempt whose
// predecessor committed before its reply was lost finds the events and
// returns the original result, and PostgreSQL's unique index on event ids
// stops a second copy even when the two race. So Append ends in one success
// or one error: nothing written (a conflict, bad input, ErrUnavailable), or
// events.ErrOutcomeUnknown when the last attempt may have committed and the
// bound ran out (append the same events again to learn which). AppendTx
// does not retry: the caller owns the commit (see its doc).
//
// # How the global order is made gap-free
//
// A BIGSERIAL alone is not an order readers can follow: sequence values are
// taken at insert time but become visible at commit time, so a reader that
// has passed value 11 can later see 10 appear and skip it forever. converge
// orders the feed the way watermill-sql does, by transaction id, with one
// change that keeps per-stream order.
//
// Each event row carries a sort_key: the appending transaction's id
// (pg_current_xact_id), raised to the stream's previous sort_key when that is
// larger. The feed is (sort_key, seq) order, and a reader only reads rows
// whose sort_key is below the xmin of its own snapshot: every transaction
// with a smaller id has ended, so no row with a smaller sort_key can still
// appear, and what a reader has passed never grows behind it. No gap
// timeouts are needed and no committed event is ever skipped.
//
// The raise is what survives the trap of ordering by transaction id alone: a
// transaction gets its id at its first write, so one that wrote saga state
// early and appended later would otherwise sort before the event it follows
// in its stream. Appends to one stream are serialised by the stream's head row
// (an upsert that checks the expected version), so version n+1 is written
// only after version n committed; the raise gives it a sort_key at least as
// large, and its later seq breaks the tie. A transaction that could still
// write a row with a given sort_key has an id below it and so holds the
// horizon below it: rows with one sort_key become readable all at once.
//
// The alternatives were weighed: a global lock (or counter row) held to
// commit makes commit order equal feed order but serialises every append in
// the cluster, loses group commit, and lets one slow AppendTx caller block
// all writers; a background sequencer cannot give Append its token before it
// returns. The price of the horizon is that any open transaction holding a
// transaction id, anywhere in the cluster, delays delivery (never order)
// until it ends: keep transactions short, and watch HorizonAge, which the lag
// monitor reports.
//
// # The feed
//
// Store implements feed.Source. Reads are plain statements (no transaction
// id). Appends wake subscribers in this process at once, and a coalesced
// NOTIFY sent just after the commit wakes other processes (a NOTIFY inside
// the append would take a database-wide lock at every commit). NOTIFYs are
// sent only while another store listens on the schema: its listener says
// hello when it connects, and stores count listeners once a second, so a
// single-process deployment pays nothing for them. One listen
// connection per Store receives them; while it is down PushHealthy reports
// false and subscribers poll. AppendTx notifies inside the caller's
// transaction, since only PostgreSQL knows when it commits; a unit
// notifies after its commit.
//
// Reads are filtered in SQL (feed.Filter): types by the stored name
// (indexed with the feed order), categories by the category column when
// the category has no "-" and by starts_with otherwise, partitions by the
// MD5 formula feed.PartitionOf documents. Values are always parameters and
// compared with = or starts_with, never LIKE, so no character is a
// wildcard. The newest readable token (Batch.ScannedTo) is read by the
// same statement as the events, so in the same snapshot: a second
// statement could see the horizon pass an event the first did not return,
// and a consumer advancing to it would skip that event.
//
// # Units of work
//
// A feed.Unit is one transaction, begun at its first use: a handler that
// writes nothing costs one UPDATE of the checkpoint, and one that only
// reads (or waits) before writing takes no transaction id, because
// PostgreSQL assigns one at the first write. Appends through the unit are
// AppendTx on its transaction; the NOTIFY that wakes other processes is
// sent after the commit, never inside the transaction. Rows live in the
// rows table (jsonb values, so they read back normalised); Get with a
// lock is SELECT ... FOR SHARE or FOR UPDATE. Commit stores each move's
// checkpoint fenced by its lease generation, then commits.
// TxFromContext is the typed escape hatch to the unit's pgx.Tx. Appends
// that AppendHooks want run under a savepoint, so a failing hook undoes
// only them; other appends do not pay for one (a savepoint per append
// would overflow PostgreSQL's subtransaction cache in a long unit and slow
// every snapshot in the cluster), so a duplicate event id aborts the
// unit's transaction.
//
// CheckpointStore.Advance moves a checkpoint forward in one fenced
// statement that never moves it back. Heartbeat and Leave keep group
// membership in the members table, a row per member with an expiry on the
// database clock: session advisory locks would survive a dead holder whose
// pooled connection stays open.
//
// watermill-sql's subscriber is not reused: it holds a transaction (and so a
// transaction id) open while handlers run, orders by raw transaction id
// (the trap above), polls, and does not roll back a handler's writes on Nack.
// Checkpoints here are leased rows with fencing generations; a handler's
// writes go through its unit and commit with the checkpoint.
package pgstore

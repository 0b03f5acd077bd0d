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
// id: PostgreSQL's unique index on event ids stops a second copy, and the
// look-up that follows the violation finds the stored events, so an
// attempt whose predecessor committed before its reply was lost returns
// the original result, even when the two race. AppendTx's statement checks
// for the ids first instead, because a violation would abort the caller's
// transaction. So Append ends in one success
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
// (an UPDATE, or an upsert for a new stream, that checks the expected
// version and takes the row lock), so version n+1 is written
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
// # What an append costs
//
// An append is one statement: move the stream's head row, insert the events,
// return their tokens. An AnyVersion append in a transaction to a stream the
// store has not seen yet sends the upsert that creates it, and one to a stream
// it has seen the plainer update (a bounded set of stream ids decides; a wrong
// guess costs a second statement, never a wrong result). Append by itself
// sends the update first, and the upsert when the stream turns out to be new.
// `converge bench --scenario append` compares it with raw INSERTs of the same
// rows into a copy of the events table (LIKE events INCLUDING ALL: the same
// five indexes, defaults and jsonb columns; ids sent as binary UUIDs on both
// sides). The profile behind the current statement, taken on a shared 2-core
// machine where every figure moved by ±30% between runs (so read the
// differences, not the values): CPU per event of the eight writers' backends
// (from /proc) and of the bench process, go pprof of the bench, EXPLAIN
// (ANALYZE, BUFFERS, WAL) of each statement, and variants of the statement run
// side by side. pg_stat_statements needs shared_preload_libraries, which that
// server did not have.
//
//   - On that machine the bench is CPU-bound: throughput follows CPU per
//     event, server and client together, not WAL flushes (group commit
//     shares them at 8 writers).
//   - The head row's update is the largest fixed cost: about 35-60 µs of
//     server CPU per append against 40-70 µs for the whole baseline INSERT
//     of one row. It was INSERT ... ON CONFLICT DO UPDATE for every
//     AnyVersion append, which probes the primary key for the speculative
//     insert, locks the row (a WAL record of its own) and then updates it.
//     Existing streams now move with a plain UPDATE: one WAL record of 96
//     bytes instead of two of 151. The updates are HOT (n_tup_hot_upd
//     equalled n_tup_upd in the bench); a fillfactor of 10 on streams made
//     no measurable difference (the writers' head rows still share a page),
//     so there is no migration for it.
//   - The id pre-check (NOT EXISTS over the event ids) cost 20-40 µs of
//     server CPU per append, a subplan and an index scan, evaluated twice
//     by the upsert. Append no longer runs it: its statement is its own
//     transaction, so the unique violation plus the look-up gives the same
//     answer on the rare replay. AppendTx keeps it, since a violation would
//     abort the caller's transaction.
//   - Per-row metadata: a json.Marshal per event and a jsonb parse of "{}"
//     on the server. Default metadata and schema versions are now sent as
//     NULL arrays and filled in by coalesce.
//   - Client: event ids went out as strings, for which pgx has no binary
//     uuid[] plan: every call built an error (formatting the ids) and
//     encoded again as text, about a fifth of pgx's encoding time. Both
//     sides now send [16]byte. Each append also woke the notifier goroutine
//     when no other process listened; it now only records the payload.
//     Validation in events.Prepare (json.Valid, UTF-8 and the content scan)
//     took about an eighth of an Append's CPU; the scan now skips
//     ParseFloat for plain integers and needs no map for small objects
//     (4 allocations for a typical payload instead of 10). What is left on
//     the client is that validation, which the bad-input contract needs,
//     and the extra parameters and returned rows.
//   - WAL per one-event append: 720 bytes in 8 records before, 665 in 7
//     now; the baseline writes 573 in 6 (plus the commit record, the same
//     on both sides).
//   - Left as they are: jsonb (both sides parse it, and reads rely on
//     PostgreSQL's normalisation, see events.ValidatePayload); prepared
//     statements (pgx caches them per connection and PostgreSQL settles on
//     a generic plan after five runs: 0.04 ms of planning instead of 0.34);
//     RETURNING, which gives Append its tokens; the sort_key raise, which
//     costs one greatest() and is what keeps per-stream order.
//
// Together, at 8 writers (`--writers 8 --duration 8s`, old and new builds
// taking turns, both against the binary-UUID baseline), the ratio went from
// 0.47-0.70 (median 0.61, eight runs) to 0.63-0.81 (median 0.67, five runs)
// at one event per append, and from 0.47-0.72 (median 0.69) to 0.66-0.89
// (median 0.78) at ten: short of the 0.9 and 0.85 aimed at.
//
// The remaining gap is the head row itself, and it grows without bound
// while any transaction in the database holds its snapshot: dead versions
// of a head row cannot be pruned then, so every append to the stream walks
// all versions written since. With one idle psql transaction open, server
// CPU per one-event append rose from about 0.3 ms to about 1 ms (the
// INSERT baseline, which only inserts, did not move) and the ratio fell to
// 0.27 at 8 x 1 and 0.12 at 8 x 10. Another session's long transaction is
// one reason the bench swings on a shared server, and one more reason to
// keep transactions short (the feed's horizon asks the same). A head that is locked (SELECT ... FOR UPDATE, no
// new row version) with the version and sort_key read from the stream's
// last event row would not grow, but it needs a second statement after the
// lock to see a concurrent writer's commit, so it was not done here.
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
// and a consumer advancing to it would skip that event. What an empty read
// reports as pending (committed events it cannot read yet) comes from the
// same statement too, evaluated only when nothing matched, so a read is
// one statement whether or not it finds events. Filtered reads take
// each type's (or category's) events from its own range of the (type,
// sort_key, seq) index, bounded by row comparisons from the cursor to the
// horizon, and merge them: "type = ANY(...)" cannot return index rows in
// order, and made PostgreSQL fetch and sort every later event of those
// types for each page, so catching up on N events cost O(N²). The plans
// rest on the table's statistics, which autovacuum keeps; right after a
// bulk load, before the first ANALYZE, PostgreSQL may still choose a
// bitmap scan of the whole range.
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
// lock is SELECT ... FOR SHARE or FOR UPDATE.
//
// Round trips, not statements, are what a unit of many events pays for,
// so a unit keeps them few:
//
//   - Row writes (Put, Delete) are held in the unit, the last per row
//     winning, and a Get without a lock answers from them. They are sent
//     as one unnest upsert and one delete, in row order (so units writing
//     the same rows lock them in the same order), at commit or before
//     anything that reads the rows table in the transaction: a List of a
//     table and prefix the unit has written, a locked Get of a held row,
//     DeleteNamespace, TxFromContext, an append with hooks. SQL run on
//     TxFromContext's transaction sees the rows as of that call. A locked
//     Get of a row the unit has not written leaves the held writes where
//     they are: a saga step locks its instance before changing it, and
//     sending the writes before every such lock cost an upsert per step
//     (8 of the 39 statements of a saga in the saga benchmark).
//   - BEGIN, and the held writes when the statement needs them, travel in
//     the same batch as the statement that needs the transaction (a locked
//     read, a List of written rows, DeleteNamespace).
//   - Commit sends the fenced checkpoint moves, the held writes and COMMIT
//     as one batch. The fence is an UPDATE that divides by its row count,
//     so a stale lease fails with division by zero and the server skips
//     the rest of the batch; without a transaction the batch is one
//     implicit transaction and fails as a whole. The unit holds its pool
//     connection, not a pool transaction, so that COMMIT can be part of
//     the batch (a pgx transaction sends its own).
//   - A statement that fails after it took the held writes leaves the unit
//     unable to commit, so a handler that swallows the error cannot commit
//     the checkpoint without those writes.
//
// Commit stores each move's checkpoint fenced by its lease generation.
// TxFromContext is the typed escape hatch to the unit's pgx.Tx: run
// statements on it, but let the unit commit or roll back. Appends
// that AppendHooks want run under a savepoint, so a failing hook undoes
// only them (and the rows it wrote); other appends do not pay for one (a
// savepoint per append would overflow PostgreSQL's subtransaction cache in
// a long unit and slow every snapshot in the cluster), so a duplicate event
// id aborts the unit's transaction.
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

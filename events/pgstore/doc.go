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
// In a unit, a statement the server aborts to break a deadlock (SQLSTATE
// 40P01) or for a serialization failure (40001) fails with
// feed.ErrConflict wrapping the server's error, as the in-memory store
// reports the same situations, so a caller that runs a unit again on
// ErrConflict does so on both. A call that fails before reaching the
// server (a done context while waiting for a connection) leaves the unit
// as it was: its held row writes stay held and later calls can commit.
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
// larger, and inside a unit to the floor an append hook set for it
// (feed.MarkScanner.OrderAfter, the converge.order_after setting, local to
// the transaction: a strong projection places each append after the last
// one it applied). The feed is (sort_key, seq) order, and a reader only reads rows
// whose sort_key is below the xmin of its own snapshot: every transaction
// with a smaller id has ended, so no row with a smaller sort_key can still
// appear, and what a reader has passed never grows behind it. No gap
// timeouts are needed and no committed event is ever skipped.
//
// The raise is what survives the trap of ordering by transaction id alone: a
// transaction gets its id at its first write, so one that wrote saga state
// early and appended later would otherwise sort before the event it follows
// in its stream. An append reads its stream's head (version and sort_key)
// from the newest committed event of the stream (or knows it, see below)
// and inserts the next
// versions; the unique index on (stream_id, version) lets only one of two
// concurrent appenders have a version: the second waits for the first to
// end and, if it committed, writes nothing and runs again on the new head
// (or reports the conflict its expected version makes). An append whose
// expected version the committed head does not meet writes nothing and
// fails at once, without waiting for an open transaction (a unit, say)
// that may leave the stream where it expects it: expectations are judged
// on committed events, and the appender's own transaction's, on both
// stores (see events.Unit). So version n+1 is
// written only after version n committed; the raise gives it a sort_key at
// least as large, and its later seq breaks the tie. A transaction that could still
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
// An append is one statement: read the stream's newest event through the
// (stream_id, version) index, insert the events after it, return their
// tokens. A one-event append, the common case, sends scalars; a longer one
// sends arrays that the statement unnests. AppendTx's statement also checks
// that the ids are not stored yet, and yields to a concurrent appender
// instead of failing, because a failed statement would abort the caller's
// transaction (see AppendTx).
//
// `converge bench --scenario append` compares Append with raw INSERTs of
// the same rows into a copy of the events table (LIKE events INCLUDING ALL:
// the same indexes, defaults and jsonb columns; ids sent as binary UUIDs on
// both sides), at the same concurrency. What the profile showed, on a
// shared 2-core machine where every figure moved by ±30% between runs (so
// read the differences, not the values; medians of ten alternating rounds
// where a figure is given): CPU per event of the writers' backends (from
// /proc) and of the bench process, go pprof of the bench, EXPLAIN
// (ANALYZE, BUFFERS, WAL) of each statement, and variants of the statement
// run side by side through pgx. pg_stat_statements needs
// shared_preload_libraries, which that server did not have.
//
//   - The bench is CPU-bound: throughput follows CPU per event, server and
//     client together, not WAL flushes (group commit shares them at eight
//     writers). Most of the client's time is pgx's network I/O, the same on
//     both sides.
//   - The largest fixed cost was a head row per stream (version and
//     sort_key) that every append updated. Its cost swung with the heap
//     page: the eight writers' head rows shared one, and in some rounds
//     the server spent twice as long per append (530 µs against 280) as in
//     others. While any transaction in the database held a snapshot, its
//     dead versions could not be pruned, and every append to the stream
//     walked all of them: with one idle transaction open, the ratio fell
//     to 0.27 at 8 x 1 and 0.12 at 8 x 10. The head is now read from the
//     stream's newest event, an index probe, and the unique index on
//     (stream_id, version), which the events table has anyway, settles
//     concurrent appenders; events are never updated, so nothing piles
//     up. As raw statements, the headless append reached 0.89 of the
//     baseline's median where the head-row append reached 0.77.
//   - Arrays and unnest for a single event: sending one event as scalars,
//     with no function scan, raised the raw statement from 0.89 to 0.96.
//   - The id pre-check (NOT EXISTS over the event ids) cost 20-40 µs of
//     server CPU per append. Append does not run it: its statement is its
//     own transaction, so the unique violation on event_id plus a look-up
//     gives the same answer on the rare replay. AppendTx keeps it.
//   - Per-row metadata: a json.Marshal per event and a jsonb parse of "{}"
//     on the server. Default metadata and schema versions are sent as NULL
//     and filled in by coalesce.
//   - Client: event ids go out as pgtype.UUID, which pgx sends in binary
//     when it prepares statements and as text in the modes that do not
//     (as strings, every call built an error and encoded again as text;
//     as [16]byte, which pgx can only send in binary, every append failed
//     in those modes). An append wakes the notifier only when another process
//     listens. Validation in events.Prepare (json.Valid, UTF-8 and the
//     content scan, which the bad-input contract needs) is about a
//     fifteenth of the client's CPU per append.
//   - Left as they are: jsonb (both sides parse it, and reads rely on
//     PostgreSQL's normalisation, see events.ValidatePayload); prepared
//     statements (pgx caches them per connection, and PostgreSQL settles on
//     a generic plan after five runs); RETURNING, which gives Append its
//     tokens; the sort_key raise, which costs one greatest() and is what
//     keeps per-stream order.
//
// Together, at eight writers (`converge bench --scenario append --writers
// 8`, the builds before and after the head row went taking turns, three
// runs each): 0.65-0.74 of the baseline became 0.79-0.83 at one event per
// append, and 0.66-0.78 became 0.85-0.98 at ten. With one idle transaction
// holding an xid through the run, 0.67 and 0.67 became 0.91 and 0.81.
//
// Measured again on a quieter day, at eight writers, with each variant of
// the statement on a copy of the table of its own:
//
//   - At ten events per append, where the ratio stayed at 0.72-0.82
//     (target 0.85), raw INSERTs cost about 16 µs of server and 5 µs of
//     client CPU per event, Append about 20 and 8.
//   - Server: run bare through pgx, the append statement costs 3-4 µs per
//     event more than the raw INSERT, and no one part holds the gap.
//     Dropping RETURNING, ORDER BY, the expectation's CASE, the
//     transaction-id sort_key or the head look-up each saved at most about
//     1 µs; unnesting five arrays instead of two and filling in defaults,
//     about as much. None can go without losing tokens, order, expected
//     versions or per-event types.
//   - Client: Prepare (validation and ids) about 1.2 µs per event, reading
//     the returned rows about 0.4, encoding the wider parameters about
//     0.5, and the garbage collection all of that feeds. Skipping the map
//     in the duplicate-id check, decoding tokens straight from the wire
//     and sending a batch's common type once each took a little of it, and
//     together did not move the ratio beyond its noise in alternating
//     runs, so none was kept.
//   - At one event per append (ratio 0.83-0.94, target 0.9), the
//     per-append costs show: about 99 µs of server CPU per event against
//     the raw INSERT's 88, and 40 µs of client CPU against 33. Of the
//     server's extra, the head look-up is about 6 µs (a run with the
//     version sent by the client instead saved that much); RETURNING and
//     the transaction-id sort_key cost little. Append now skips the
//     look-up where it can (see the next section).
//   - The (stream_id, version) index of streams appended to side by side
//     is about half full. When a leaf page fills, PostgreSQL puts the split
//     right after the new tuple (leaving the left page full) only for index
//     tuples no wider than two bigints; a stream id of eight bytes or more
//     makes them wider, and pages split in the middle. The baseline's copy
//     has the same index and stream ids as long, so both pay for it.
//
// # Appends that skip the head look-up
//
// A store remembers, for up to 8,192 streams, the head (version and
// sort_key) its own last committed Append left, and its next Append to
// the stream inserts at that version + 1 with the sort_key raised to the
// remembered one, without reading anything first; an Append expecting
// NoStream guesses an empty stream the same way. A remembered head can
// only be behind, never ahead: events are never deleted or rewritten,
// and appends in a caller's transaction or a unit, which may roll back,
// are not remembered. So when the guess is wrong, version + 1 is taken,
// the unique index refuses the insert, Append's statement (its own
// transaction) leaves nothing behind but a dead row, and the append runs
// again the usual way; when the insert succeeds, the stream really ended
// at the remembered version, so versions stay gap-free and the raise
// uses the true predecessor's final sort_key. A wrong guess forgets the
// head and counts the stream as contended (below), and a contended
// stream is never guessed, so a stream two processes write costs one
// failed statement per two-second contended spell, not one per append.
// An expectation the remembered head does not fit (Exactly(n) for another
// n, NoStream on a stream known to exist) goes the usual way, which
// reports the conflict with the stream's true version.
//
// "Never ahead" assumes PostgreSQL keeps what it committed. One that can
// lose committed transactions (synchronous_commit off and a crash, a
// promoted asynchronous standby) loses events whatever the store does, and
// a head remembered past what survived would then leave a version gap. So
// a store forgets every head when it loses the server: when its LISTEN
// connection fails, or an append finds the database unavailable. A store
// with DisableListen has no such connection, and its pool reconnects after
// a restart without a word, so it remembers no heads at all: each of its
// appends reads the stream's head.
//
// Measured on a throw-away cluster with fsync off, so that both sides were
// CPU-bound as the section above describes (`converge bench --scenario
// append --writers 8`, the builds before and after taking turns, six
// runs each): 0.70-0.84 of the baseline became 0.80-0.88 at one event per
// append, and 0.78-0.88 became 0.84-0.88 at ten, where the look-up is
// shared by ten events and the figures moved within their noise. On a
// server whose disk flushes set the pace, the two builds were within each
// other's noise.
//
// The price of reading the head from the events: appenders of one stream
// that collide cannot queue on a row lock, and without more, every one of
// them read the same head, one won, and the rest ran again. With eight
// writers on one stream that cut Append to about a third of what the head
// row allowed, and AppendTx to about a half. So a stream on which an
// append lost a race is remembered as contended for two seconds, and
// appends to it queue on a transaction-level advisory lock on the stream,
// taken in the same round trip just before the statement: a queued append
// reads the head after the one before it committed, and does not lose. At
// eight writers on one stream the rates then came out above the head row's
// (Append 1,400-1,700/s against 1,200-1,500, AppendTx 890-1,020 against
// 740-920, alternating runs). Queueing changes when an append is judged,
// never by what rule: only an append whose expected version the stream's
// committed head meets queues, and one it does not fails at once, as on a
// stream that is not contended, even behind an open unit that holds the
// lock and will leave the stream where the append expects it (the lock
// statement reads the head first). In a transaction the queued statement
// also writes nothing unless the transaction holds the lock, and runs
// again if the head came to meet the expectation in between. Append takes
// no lock on a stream that is not contended. AppendTx takes it on its
// first append to a stream (whose expectation the committed head meets;
// one it does not fails at once, taking nothing), and holds it until the
// transaction ends: a transaction that appended before
// the stream turned contended and queued for it afterwards, behind an
// append waiting for its first version, would deadlock. (A transaction
// appending to thousands of streams therefore holds thousands of advisory
// locks; PostgreSQL's lock table holds max_locks_per_transaction times
// max_connections of them in all.) A unit knows which streams it appended
// to: it takes the lock only on its first append to a contended stream, so
// a saga or command unit appending to many streams holds no lock for them.
// The lock never decides anything: the unique index settles any append
// that did not queue (one from another process that has not lost a race
// yet). An append that lost 65 races in a row (it runs again 64 times)
// reports ErrUnavailable
// (nothing written), and Append's retries back off.
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
// false and subscribers poll. Checkpoint moves announced while it was
// down are lost, so when it listens again, and before PushHealthy turns
// true, the store announces every checkpoint's stored position to its
// watchers: a tracker that missed a rewind sees a position behind its own
// and reads the store. Should that step or the hello fail, the store
// closes the connection, and the listener reconnects after
// Config.ListenReconnectDelay and runs both again: PushHealthy turns true
// only once they succeeded. AppendTx notifies inside the caller's
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
//   - Prefetch reads many rows in one statement (their addresses as
//     arrays, probing the primary key, locked after sorting so units
//     prefetching overlapping rows lock them in the same order) and keeps
//     them in the unit: a later Get of one, with at most the lock it was
//     read with, answers from them. A row the unit writes afterwards
//     answers from its held write instead, and so does a locked Get of a
//     held row that a Prefetch or a locked Get already read with that
//     lock, without sending the write (were the row absent then, no lock
//     was taken, but the write is the unit's own and its upsert at commit
//     waits for any other writer). A locked Get or a List that reads rows
//     anew replaces or drops older prefetched copies, and a Prefetch
//     without a lock runs as a Get without one: on the pool until the
//     unit has begun its transaction. Prefetched rows stop
//     answering once TxFromContext hands the transaction out (SQL on it
//     may change them), after DeleteNamespace, and after an append hook's
//     savepoint rolls back (locks taken inside it went with it).
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
//     the checkpoint without those writes. A call that fails before
//     anything is sent (a done context while the unit's first statement
//     waits for a connection) puts the writes back and leaves the unit
//     usable.
//
// Units begin READ COMMITTED whatever the connections' default, and New
// refuses a pool whose transactions default to REPEATABLE READ or
// SERIALIZABLE (default_transaction_isolation): the store's statements
// outside units (Append, checkpoint moves, leases) run at the default, and
// at those levels fail with serialization errors where READ COMMITTED
// waits and carries on.
// New also refuses connections whose client_encoding is not UTF8: pgx
// sends UTF-8 whatever the setting, and the server would convert it as the
// named encoding, storing events' text altered without an error. It
// refuses a database whose encoding is neither UTF8 nor SQL_ASCII too:
// there the text is stored converted, and PostgreSQL's md5() of a stream
// id, which partitions the feed in SQL, would disagree with the hash feed
// consumers take in Go.
//
// Every pgx query exec mode works (default_query_exec_mode in the URL),
// including simple_protocol, which a connection pooler in transaction mode
// without prepared statements needs; the store and feed suites run in it.
// LISTEN needs a session of its own, which such a pooler does not keep:
// the store opens its listening connection with the pool's settings, so
// behind one set DisableListen, and subscribers poll (and appends read
// each stream's head: see the section on skipping it).
//
// Any pool size works, down to one connection, for projections, sagas and
// command handlers: nothing that holds a unit's connection waits for a
// second one. (One exception: a projection rebuild's switch reads the feed
// on a second connection while it holds the projection's state row, and
// gives up for now when none frees within a moment, so on a pool of one
// connection a rebuild never switches.) A unit takes its connection at its
// first locked read, write sent or append, and keeps it to the end; reads
// without a lock made while it holds one go through it (the unit's Rows,
// projections' views and the gates of sagas read through the unit the
// context carries). That rule is what keeps a small pool live: when a
// saga's gate read the instance through the pool behind the head of a
// unit, four saga partitions on pgxpool's default of four connections (on
// a machine of up to four cores) each held a connection and waited for
// another, for ever. Connections beyond the partitions, the projections
// and the command handlers that run at once only buy parallelism; the
// LISTEN connection is opened apart from the pool.
//
// Commit stores each move's checkpoint fenced by its lease generation.
// TxFromContext is the typed escape hatch to the unit's pgx.Tx: run
// statements on it, but let the unit commit or roll back. A handler that
// has not answered LeaseTTL after its delivery ended may still be running
// a statement there, so its consumer aborts the unit (feed.Aborter)
// rather than rolling it back on the same connection: the statement is
// cancelled and the connection closed, never handed back to the pool
// (which opens another when it needs one). Appends
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

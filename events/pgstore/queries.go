package pgstore

import (
	"fmt"
	"math"
)

// queries holds the store's SQL with the schema baked in, built once.
type queries struct {
	appendSQL           // the append statements
	streamLock   string // queues an append on its stream (see hotStreams)
	eventsByID   string // a retried append's events
	notify       string
	readStream   string
	unmarked     string // the unit's MarkScanner read
	streamVer    string
	events       string
	head         string
	countBetween string
	horizonAge   string
	oldestAfter  string
	consumers    string
	acquire      string
	renew        string
	release      string
	position     string
	allPositions string // every checkpoint, announced again after a reconnect
	commit       string
	advance      string
	positions    string
	heartbeat    string
	dropExpired  string
	members      string
	leave        string
	rowGet       string
	rowGetShare  string
	rowGetUpdate string
	// rowPrefetch reads many rows by address, locked in address order
	// (units locking overlapping sets wait for each other instead of
	// deadlocking), indexed by lock.
	rowPrefetch [3]string
	rowListAsc  string
	rowListDesc string
	rowPut      string
	rowDelete   string
	// Held writes (row_buffer.go): many rows per statement, and the
	// checkpoint move that fails (division by zero, 22012) when the lease
	// is no longer current, so it aborts the batch's implicit transaction.
	rowPutMany    string
	rowDeleteMany string
	commitFenced  string
	rowDeleteNS   string
}

// The ordering key. pg_current_xact_id() gives this transaction an id if it
// has none; the xid8 is cast through text because pgx has no xid8 codec and
// real ids stay far below 2^63.
const xactID = `pg_current_xact_id()::text::bigint`

// orderAfter is the floor feed.MarkScanner.OrderAfter sets for the
// transaction's appends (0 when unset).
const orderAfter = `coalesce(nullif(current_setting('converge.order_after', true), '')::bigint, 0)`

// orderAfterSQL raises the transaction's floor to $1, never lowering it.
const orderAfterSQL = `SELECT set_config('converge.order_after', greatest($1::bigint, ` + orderAfter + `)::text, true)`

// horizon is the read horizon: every transaction with an id below it has
// ended, so no row with a smaller sort_key can still appear.
const horizon = `pg_snapshot_xmin(pg_current_snapshot())::text::bigint`

const eventColumns = `seq, sort_key, event_id::text, stream_id, version, type, schema_version, payload, metadata, recorded_at`

func newQueries(schema string) queries {
	events := table(schema, "events")
	cps := table(schema, "checkpoints")
	members := table(schema, "members")
	rows := table(schema, "rows")
	rowGet := fmt.Sprintf(`SELECT value, major, minor FROM %s WHERE namespace = $1 AND tbl = $2 AND key = $3`, rows)
	rowPrefetch := fmt.Sprintf(`SELECT namespace, tbl, key, value, major, minor FROM %s
WHERE (namespace, tbl, key) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[])) ORDER BY namespace, tbl, key`, rows)
	// The prefix bounds the index range from below; starts_with (not LIKE)
	// keeps every character of it literal.
	rowList := `SELECT key, value, major, minor FROM %s WHERE namespace = $1 AND tbl = $2
AND ($3 = '' OR (key >= $3 AND starts_with(key, $3))) AND ($4 = '' OR key %s $4) ORDER BY key %s LIMIT $5`

	return queries{
		events:    events,
		appendSQL: appendStatements(events),
		// A 64-bit hash of "<schema>.<stream>" ($1): a collision only makes
		// two streams queue together. Only an append whose expectation
		// ($3, as the append statements' $8) the committed head of the
		// stream ($2) meets queues: one that fails it fails at once, as
		// it does on a stream that is not contended (see hotStreams).
		streamLock: fmt.Sprintf(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0)) FROM (
	SELECT coalesce(max(version), 0) AS version FROM %s WHERE stream_id = $2
) head WHERE CASE $3::bigint WHEN %d THEN true WHEN %d THEN head.version > 0 ELSE head.version = $3::bigint END`, events, expectAny, expectExists),
		eventsByID:   fmt.Sprintf(`SELECT %s FROM %s WHERE event_id = ANY($1::uuid[])`, eventColumns, events),
		notify:       `SELECT pg_notify($1, $2)`,
		readStream:   fmt.Sprintf(`SELECT %s FROM %s WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3`, eventColumns, events),
		unmarked:     fmt.Sprintf(`SELECT %s FROM %s WHERE (sort_key, seq) > ($1, $2) AND type = ANY($3::text[]) AND NOT ($4::text = ANY(string_to_array(coalesce(metadata->'extra'->>'%s', ''), ' '))) ORDER BY sort_key, seq LIMIT $5`, eventColumns, events, marksKey),
		streamVer:    fmt.Sprintf(`SELECT coalesce(max(version), 0) FROM %s WHERE stream_id = $1`, events),
		head:         fmt.Sprintf(`SELECT sort_key, seq FROM %s ORDER BY sort_key DESC, seq DESC LIMIT 1`, events),
		countBetween: fmt.Sprintf(`SELECT count(*) FROM (SELECT 1 FROM %s WHERE (sort_key, seq) > ($1, $2) AND (sort_key, seq) <= ($3, $4) LIMIT $5) c`, events),
		// The oldest transaction that holds the horizon back, anywhere in the
		// cluster: its age is how long delivery has been held up. Sessions
		// of other roles show no xact_start without pg_read_all_stats, so
		// the snapshot's xmin and xmax come too (see horizonWatch).
		horizonAge: `SELECT coalesce((SELECT extract(epoch FROM now() - xact_start) FROM pg_stat_activity
WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() ORDER BY age(backend_xid) DESC LIMIT 1), 0)::float8,
pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint FROM pg_current_snapshot() s`,
		// The oldest of the first $3 in feed order, not the first: see
		// OldestAfter.
		oldestAfter: fmt.Sprintf(`SELECT min(recorded_at) FROM (SELECT recorded_at FROM %s WHERE (sort_key, seq) > ($1, $2) ORDER BY sort_key, seq LIMIT $3) f`, events),
		// The owner only while its lease runs, by the server's clock (the
		// one leases are granted by): a lapsed lease is held by nobody.
		consumers: fmt.Sprintf(`SELECT name, major, minor, CASE WHEN lease_until >= now() THEN coalesce(owner, '') ELSE '' END,
generation, lease_until, heartbeat_at, updated_at
FROM %s ORDER BY name`, cps),
		// Every acquire starts a new generation, by the holder's own owner
		// string too (feed.CheckpointStore.Acquire): a lease acquired before
		// under that owner can commit no more.
		acquire: fmt.Sprintf(`
INSERT INTO %[1]s AS c (name, owner, generation, lease_until, heartbeat_at) VALUES ($1, $2, 1, now() + $3::interval, now())
ON CONFLICT (name) DO UPDATE
SET generation = c.generation + 1,
    owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until, heartbeat_at = now()
WHERE c.owner IS NULL OR c.owner = EXCLUDED.owner OR c.lease_until < now()
RETURNING generation, major, minor`, cps),
		renew:        fmt.Sprintf(`UPDATE %s SET lease_until = now() + $4::interval, heartbeat_at = now() WHERE name = $1 AND owner = $2 AND generation = $3`, cps),
		release:      fmt.Sprintf(`UPDATE %s SET owner = NULL, lease_until = NULL WHERE name = $1 AND owner = $2 AND generation = $3`, cps),
		position:     fmt.Sprintf(`SELECT major, minor FROM %s WHERE name = $1`, cps),
		allPositions: fmt.Sprintf(`SELECT name, major, minor FROM %s`, cps),
		// $6/$7, when not NULL, are where the unit began (feed.Move.From).
		// A unit waiting on the row lock of one whose commit is still
		// finishing checks them again on the row that commit left, so
		// it cannot pass a move it no longer follows.
		// heartbeat_at is the commit's time (clock_timestamp), not the
		// transaction's start (now()): a unit that began at a locked read
		// seconds ago would stamp its holder's heartbeat that far back, over
		// the renewals made meanwhile, and a live holder read as stalled.
		commit: fmt.Sprintf(`UPDATE %s SET major = $4, minor = $5, updated_at = now(), heartbeat_at = clock_timestamp()
WHERE name = $1 AND owner = $2 AND generation = $3 AND ($6::bigint IS NULL OR (major, minor) = ($6::bigint, $7::bigint))`, cps),
		// The position only ever moves forward; the row is matched (and the
		// lease proven current) either way. RETURNING sees the new row, so
		// whether it moved is judged on the old one, read (and locked) first.
		advance: fmt.Sprintf(`WITH old AS (
	SELECT name, major, minor FROM %[1]s WHERE name = $1 AND owner = $2 AND generation = $3 FOR UPDATE
)
UPDATE %[1]s AS c SET
	major = CASE WHEN (old.major, old.minor) < ($4::bigint, $5::bigint) THEN $4 ELSE old.major END,
	minor = CASE WHEN (old.major, old.minor) < ($4::bigint, $5::bigint) THEN $5 ELSE old.minor END,
	updated_at = CASE WHEN (old.major, old.minor) < ($4::bigint, $5::bigint) THEN now() ELSE c.updated_at END,
	heartbeat_at = now()
FROM old WHERE c.name = old.name
RETURNING (old.major, old.minor) < ($4::bigint, $5::bigint)`, cps),
		positions: fmt.Sprintf(`SELECT coalesce(c.major, 0), coalesce(c.minor, 0)
FROM unnest($1::text[]) WITH ORDINALITY AS n(name, ord) LEFT JOIN %s c ON c.name = n.name ORDER BY n.ord`, cps),
		heartbeat: fmt.Sprintf(`INSERT INTO %s (grp, member, expires_at) VALUES ($1, $2, now() + $3::interval)
ON CONFLICT (grp, member) DO UPDATE SET expires_at = EXCLUDED.expires_at`, members),
		dropExpired:  fmt.Sprintf(`DELETE FROM %s WHERE grp = $1 AND expires_at < now()`, members),
		members:      fmt.Sprintf(`SELECT member FROM %s WHERE grp = $1 AND expires_at >= now() ORDER BY member`, members),
		leave:        fmt.Sprintf(`DELETE FROM %s WHERE grp = $1 AND member = $2`, members),
		rowGet:       rowGet,
		rowGetShare:  rowGet + " FOR SHARE",
		rowGetUpdate: rowGet + " FOR UPDATE",
		rowPrefetch:  [3]string{rowPrefetch, rowPrefetch + " FOR SHARE", rowPrefetch + " FOR UPDATE"},
		rowListAsc:   fmt.Sprintf(rowList, rows, ">", "ASC"),
		rowListDesc:  fmt.Sprintf(rowList, rows, "<", "DESC"),
		rowPut: fmt.Sprintf(`INSERT INTO %s (namespace, tbl, key, value, major, minor) VALUES ($1, $2, $3, $4::jsonb, $5, $6)
ON CONFLICT (namespace, tbl, key) DO UPDATE SET value = EXCLUDED.value, major = EXCLUDED.major, minor = EXCLUDED.minor, updated_at = now()`, rows),
		rowDelete: fmt.Sprintf(`DELETE FROM %s WHERE namespace = $1 AND tbl = $2 AND key = $3`, rows),
		rowPutMany: fmt.Sprintf(`INSERT INTO %s (namespace, tbl, key, value, major, minor)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::bigint[], $6::bigint[])
ON CONFLICT (namespace, tbl, key) DO UPDATE SET value = EXCLUDED.value, major = EXCLUDED.major, minor = EXCLUDED.minor, updated_at = now()`, rows),
		rowDeleteMany: fmt.Sprintf(`DELETE FROM %s WHERE (namespace, tbl, key) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))`, rows),
		commitFenced: fmt.Sprintf(`WITH moved AS (UPDATE %s SET major = $4, minor = $5, updated_at = now(), heartbeat_at = clock_timestamp()
WHERE name = $1 AND owner = $2 AND generation = $3 AND ($6::bigint IS NULL OR (major, minor) = ($6::bigint, $7::bigint)) RETURNING 1)
SELECT 1 / count(*) FROM moved`, cps),
		rowDeleteNS: fmt.Sprintf(`DELETE FROM %[1]s WHERE (namespace, tbl, key) IN
(SELECT namespace, tbl, key FROM %[1]s WHERE namespace = $1 ORDER BY tbl, key LIMIT $2)`, rows),
	}
}

// The expectation an append statement checks ($8): a version (0 for a
// new stream), or one of these.
const (
	expectAny    = -1
	expectExists = -2
)

// appendSQL is the set of append statements. Each reads the stream's head
// from its newest event and inserts the events after it; the unique index
// on (stream_id, version) is what serialises appenders of one stream. No
// head row is written: see the package doc for what that saves.
//
// The plain statements are Append's. Append's statement is its own
// transaction, so an append that loses the race for the next version
// simply fails (a unique violation on (stream_id, version), once the
// winner committed) and is run again or reported as a conflict; a reused
// event id fails the same way on event_id.
//
// The tx statements run in a caller's transaction, where a violation would
// abort it. They insert the first event with ON CONFLICT (stream_id,
// version) DO NOTHING, which waits for a concurrent appender of that
// version to end and then skips the row if it committed; the other events
// are inserted only after the first one was (they read its RETURNING), so
// the append lands whole or not at all. Once the first event is in, no
// other transaction can hold a later version: its events would be
// contiguous from a head it read, and every version up to ours is
// committed. They also require that none of the ids is stored yet (the
// fresh condition): when one is, nothing is inserted and the statement
// returns no rows, like a lost race or a failed expectation, so a rerun
// inside a caller's transaction is recognised by its ids without aborting
// it. A concurrent append of the same ids that commits after the
// statement's snapshot still ends in the unique violation on event_id.
//
// One-event appends, the common case (a command, a command's outcome),
// have statements of their own with scalar parameters: no arrays to
// encode, no unnest, and an id check that is one equality, which
// PostgreSQL plans as one index probe. The array form "= ANY($2)" is
// planned for ten ids, and with ten probes to pay for, a sequential scan
// looks cheaper until the table holds about a thousand events; the plan is
// then cached for the connection, and a young store under load scanned its
// growing table on every append in a unit until autovacuum's first
// ANALYZE.
//
// The sort_key raise: an event's sort_key is the appending transaction's
// id, raised to its predecessor's sort_key when that is larger, so the
// sort_key never decreases along a stream (see the package doc). The
// predecessor is committed (the head is read in the statement's snapshot),
// so its sort_key is final.
type appendSQL struct {
	many, one     string
	txMany, txOne string
	// txManyQueued and txOneQueued are the tx statements behind the
	// stream's lock (see runAppendQueued): they also write nothing unless
	// the transaction holds the lock, whose key is $9.
	txManyQueued, txOneQueued string
	// guessMany and guessOne are Append's statements for a stream whose
	// head this store remembers (see streamHeads): $8 is that head's
	// version and $9 its sort_key, so they read nothing first.
	guessMany, guessOne string
}

func appendStatements(events string) appendSQL {
	const cols = `sort_key, event_id, stream_id, version, type, schema_version, payload, metadata, category`
	// $4 (schema versions) and $6 (metadata) are NULL when every event has
	// the default: unnest pads a NULL array with NULLs, which coalesce
	// turns into the defaults, so the common event sends and parses
	// neither.
	const elems = `unnest($2::uuid[], $3::text[], $4::int[], $5::jsonb[], $6::jsonb[]) WITH ORDINALITY AS e(id, type, sv, payload, meta, ord)`
	const vals = `e.id, $1, %s + e.ord, e.type, coalesce(e.sv, 1), e.payload, coalesce(e.meta, '{}'), $7`
	const oneVals = `$2::uuid, $1, head.version + 1, $3::text, coalesce($4::int, 1), $5::jsonb, coalesce($6::jsonb, '{}'), $7`
	head := func(fresh string) string {
		return fmt.Sprintf(`
WITH last AS (
	SELECT version, sort_key FROM %[1]s WHERE stream_id = $1 ORDER BY version DESC LIMIT 1
), head AS (
	SELECT coalesce(l.version, 0) AS version, greatest(%[2]s, coalesce(l.sort_key, 0), %[6]s) AS sort_key
	FROM (SELECT) one LEFT JOIN last l ON true
	WHERE CASE $8::bigint WHEN %[3]d THEN true WHEN %[4]d THEN l.version IS NOT NULL ELSE coalesce(l.version, 0) = $8::bigint END
	AND %[5]s
)`, events, xactID, expectAny, expectExists, fresh, orderAfter)
	}
	const returning = `RETURNING seq, sort_key, version`
	var q appendSQL
	q.many = head("true") + fmt.Sprintf(`
INSERT INTO %[1]s (%[2]s)
SELECT head.sort_key, %[3]s FROM head, %[4]s
ORDER BY e.ord
%[5]s`, events, cols, fmt.Sprintf(vals, "head.version"), elems, returning)
	q.one = head("true") + fmt.Sprintf(`
INSERT INTO %[1]s (%[2]s)
SELECT head.sort_key, %[3]s FROM head
%[4]s`, events, cols, oneVals, returning)

	guessVals := `e.id, $1, $8::bigint + e.ord, e.type, coalesce(e.sv, 1), e.payload, coalesce(e.meta, '{}'), $7`
	guessSortKey := fmt.Sprintf(`greatest(%s, $9::bigint)`, xactID)
	q.guessMany = fmt.Sprintf(`
INSERT INTO %[1]s (%[2]s)
SELECT %[3]s, %[4]s FROM %[5]s
ORDER BY e.ord
%[6]s`, events, cols, guessSortKey, guessVals, elems, returning)
	q.guessOne = fmt.Sprintf(`
INSERT INTO %[1]s (%[2]s)
VALUES (%[3]s, $2::uuid, $1, $8::bigint + 1, $3::text, coalesce($4::int, 1), $5::jsonb, coalesce($6::jsonb, '{}'), $7)
%[4]s`, events, cols, guessSortKey, returning)

	fresh := fmt.Sprintf(`NOT EXISTS (SELECT 1 FROM %s WHERE event_id = ANY($2::uuid[]))`, events)
	const locked = ` AND pg_try_advisory_xact_lock(hashtextextended($9, 0))`
	txMany := `, e AS (
	SELECT * FROM %[4]s
), first AS (
	INSERT INTO %[1]s (%[2]s)
	SELECT head.sort_key, %[3]s FROM head, e WHERE e.ord = 1
	ON CONFLICT (stream_id, version) DO NOTHING
	%[6]s
), rest AS (
	INSERT INTO %[1]s (%[2]s)
	SELECT first.sort_key, %[5]s FROM first, e WHERE e.ord > 1
	ORDER BY e.ord
	%[6]s
)
SELECT seq, sort_key, version FROM first UNION ALL SELECT seq, sort_key, version FROM rest`
	txMany = fmt.Sprintf(txMany, events, cols, fmt.Sprintf(vals, "head.version"), elems, fmt.Sprintf(vals, "first.version - 1"), returning)
	q.txMany, q.txManyQueued = head(fresh)+txMany, head(fresh+locked)+txMany
	freshOne := fmt.Sprintf(`NOT EXISTS (SELECT 1 FROM %s WHERE event_id = $2::uuid)`, events)
	txOne := fmt.Sprintf(`
INSERT INTO %[1]s (%[2]s)
SELECT head.sort_key, %[3]s FROM head
ON CONFLICT (stream_id, version) DO NOTHING
%[4]s`, events, cols, oneVals, returning)
	q.txOne, q.txOneQueued = head(freshOne)+txOne, head(freshOne+locked)+txOne
	return q
}

// readFeedSQL reads the events after ($1, $2) matching where, up to $3,
// and on every row the newest readable token after ($1, $2) whether it
// matches or not: both in one statement, so in one snapshot, which is what
// lets the caller report how far it looked without skipping an event that
// became readable in between. When nothing is readable there is no row
// (without pending) or one row of NULLs but the pending columns.
//
// With pending, a row without an event (nothing matched) also carries
// what Batch.Pending is made of, from the same snapshot: whether a
// committed event after the cursor matches (it can only be behind the
// horizon, as the read returned none), and the newest committed event
// after the cursor, matching or not. Asked in a statement of its own, the
// question cost every empty read a second statement; on a busy database,
// where open units hold the horizon most of the time, most reads of most
// consumers are empty. The subqueries are uncorrelated, so PostgreSQL
// runs them once, and only for a row where the CASE asks (a read that
// returned events pays nothing). An event committed after the snapshot
// is not counted, but its commit wakes the reader, which took its wake
// channel before reading. (Comparing sort keys with the horizon in a
// second statement instead would race: the horizon can pass an event
// between the two, and the reader would wait for a wake-up that never
// comes.) The newest event counts even when it does not match: a filtered
// reader moves its checkpoint past unmatched events (Batch.ScannedTo), so
// unmatched events it cannot read yet are pending for it too; without
// them a filtered reader stopped at the horizon saw nothing pending and
// slept until a wake-up that the transaction holding the horizon (in
// another schema, say) never sends.
//
// With types (or categories), each type's events are read from its own
// range of the (type, sort_key, seq) index, at most $3 of each, and merged. The range is given
// as row comparisons on the index's columns, so the scan starts at the
// cursor and stops at the horizon; with "type = ft.type" it started at the
// type's first event. "type = ANY(...)"
// cannot return index rows in order, so PostgreSQL fetched every later
// event of those types and sorted them for each page: a consumer catching
// up on N events did O(N²) work (5 ms a page at 50,000 events behind).
func (q queries) readFeedSQL(where string, by indexedBy, pending bool) string {
	m := fmt.Sprintf(`SELECT %[2]s FROM %[1]s WHERE (sort_key, seq) > ($1, $2) AND sort_key < %[3]s%[4]s ORDER BY sort_key, seq LIMIT $3`,
		q.events, eventColumns, horizon, where)
	switch {
	case by.one:
		// One value: its range in index order is already feed order (half
		// the server time of the merge below at 2,000 rows).
		m = fmt.Sprintf(`SELECT %[2]s FROM %[1]s WHERE (%[6]s, sort_key, seq) > ((%[5]s::text[])[1], $1, $2)
	AND (%[6]s, sort_key) < ((%[5]s::text[])[1], %[3]s)%[4]s ORDER BY %[6]s, sort_key, seq LIMIT $3`,
			q.events, eventColumns, horizon, where, by.values, by.column)
	case by.column != "":
		m = fmt.Sprintf(`SELECT e.* FROM unnest(%[5]s::text[]) AS f(v) CROSS JOIN LATERAL (
	SELECT %[2]s FROM %[1]s WHERE (%[6]s, sort_key, seq) > (f.v, $1, $2) AND (%[6]s, sort_key) < (f.v, %[3]s)%[4]s
	ORDER BY %[6]s, sort_key, seq LIMIT $3
) e ORDER BY e.sort_key, e.seq LIMIT $3`, q.events, eventColumns, horizon, where, by.values, by.column)
	}
	cols := `top.sort_key, top.seq, m.seq, m.sort_key, m.event_id, m.stream_id, m.version, m.type, m.schema_version, m.payload, m.metadata, m.recorded_at`
	if !pending {
		return fmt.Sprintf(`WITH top AS (
	SELECT sort_key, seq FROM %[1]s WHERE (sort_key, seq) > ($1, $2) AND sort_key < %[2]s ORDER BY sort_key DESC, seq DESC LIMIT 1
), m AS (%[3]s)
SELECT %[4]s
FROM top LEFT JOIN m ON true ORDER BY m.sort_key, m.seq`, q.events, horizon, m, cols)
	}
	return fmt.Sprintf(`WITH top AS (
	SELECT sort_key, seq FROM %[1]s WHERE (sort_key, seq) > ($1, $2) AND sort_key < %[2]s ORDER BY sort_key DESC, seq DESC LIMIT 1
), m AS (%[3]s), newest AS (
	SELECT sort_key, seq FROM %[1]s WHERE (sort_key, seq) > ($1, $2) ORDER BY sort_key DESC, seq DESC LIMIT 1
)
SELECT %[4]s,
	CASE WHEN m.seq IS NULL THEN EXISTS (%[5]s) END,
	CASE WHEN m.seq IS NULL THEN (SELECT sort_key FROM newest) END,
	CASE WHEN m.seq IS NULL THEN (SELECT seq FROM newest) END
FROM (SELECT 1) one LEFT JOIN top ON true LEFT JOIN m ON true ORDER BY m.sort_key, m.seq`, q.events, horizon, m, cols, q.matchedSQL(where, by))
}

// matchedSQL finds a committed event after the cursor ($1, $2) that
// matches where, readable or not (for Batch.Pending, see readFeedSQL).
// With types (or categories) it probes each one's index range from the
// cursor, as the read does.
func (q queries) matchedSQL(where string, by indexedBy) string {
	if by.column == "" {
		return fmt.Sprintf(`SELECT 1 FROM %[1]s WHERE (sort_key, seq) > ($1, $2)%[2]s LIMIT 1`, q.events, where)
	}
	return fmt.Sprintf(`SELECT 1 FROM unnest(%[3]s::text[]) AS f(v) CROSS JOIN LATERAL (
	SELECT 1 FROM %[1]s WHERE (%[5]s, sort_key, seq) > (f.v, $1, $2) AND (%[5]s, sort_key, seq) <= (f.v, %[4]d, %[4]d)%[2]s
	ORDER BY %[5]s, sort_key, seq LIMIT 1
) e LIMIT 1`, q.events, where, by.values, int64(math.MaxInt64), by.column)
}

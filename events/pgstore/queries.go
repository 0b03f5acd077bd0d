package pgstore

import "fmt"

// queries holds the store's SQL with the schema baked in, built once.
type queries struct {
	// Append statements, indexed by whether they check the event ids
	// first (see appendStatements).
	createAppend [2]string // NoStream, and AnyVersion when the stream is new
	moveAppend   [2]string // AnyVersion, StreamExists, Exactly(n > 0)
	eventsByID   string    // a retried append's events
	notify       string
	readStream   string
	streamVer    string
	readFeed     string
	readFeedCat  string
	pending      string
	pendingCat   string
	head         string
	countBetween string
	horizonAge   string
	oldestAfter  string
	consumers    string
	acquire      string
	renew        string
	release      string
	position     string
	commit       string
}

// The ordering key. pg_current_xact_id() gives this transaction an id if it
// has none; the xid8 is cast through text because pgx has no xid8 codec and
// real ids stay far below 2^63.
const xactID = `pg_current_xact_id()::text::bigint`

// horizon is the read horizon: every transaction with an id below it has
// ended, so no row with a smaller sort_key can still appear.
const horizon = `pg_snapshot_xmin(pg_current_snapshot())::text::bigint`

const eventColumns = `seq, sort_key, event_id::text, stream_id, version, type, schema_version, payload, metadata, recorded_at`

func newQueries(schema string) queries {
	events := table(schema, "events")
	streams := table(schema, "streams")
	cps := table(schema, "checkpoints")

	// insertEvents inserts the call's events after the stream head row moved.
	// The head row's lock serialises appenders of one stream, so version n+1
	// is inserted (and gets its seq) only after version n committed. $5
	// (schema versions) and $7 (metadata) are NULL when every event has the
	// default: unnest pads a NULL array with NULLs, which coalesce turns
	// into the defaults, so the common event sends and parses neither.
	insertEvents := fmt.Sprintf(`
INSERT INTO %[1]s (sort_key, event_id, stream_id, version, type, schema_version, payload, metadata, category)
SELECT head.sort_key, e.id, $1, head.version - $2 + e.ord, e.type, coalesce(e.sv, 1), e.payload, coalesce(e.meta, '{}'), $8
FROM head, unnest($3::uuid[], $4::text[], $5::int[], $6::jsonb[], $7::jsonb[]) WITH ORDINALITY AS e(id, type, sv, payload, meta, ord)
ORDER BY e.ord
RETURNING seq, sort_key, version`, events)

	create, move := appendStatements(streams, events, insertEvents)

	return queries{
		createAppend: create,
		moveAppend:   move,
		eventsByID:   fmt.Sprintf(`SELECT %s FROM %s WHERE event_id = ANY($1::uuid[])`, eventColumns, events),
		notify:       `SELECT pg_notify($1, $2)`,
		readStream:   fmt.Sprintf(`SELECT %s FROM %s WHERE stream_id = $1 AND version >= $2 ORDER BY version LIMIT $3`, eventColumns, events),
		streamVer:    fmt.Sprintf(`SELECT coalesce((SELECT version FROM %s WHERE stream_id = $1), 0)`, streams),
		readFeed: fmt.Sprintf(`SELECT %s FROM %s WHERE (sort_key, seq) > ($1, $2) AND sort_key < %s ORDER BY sort_key, seq LIMIT $3`,
			eventColumns, events, horizon),
		readFeedCat: fmt.Sprintf(`SELECT %s FROM %s WHERE %s AND (sort_key, seq) > ($1, $2) AND sort_key < %s ORDER BY sort_key, seq LIMIT $3`,
			eventColumns, events, categoryMatch("$4"), horizon),
		// pending counts the committed events after the cursor, up to one
		// more than the read may return. It runs in a later snapshot than
		// the read, so every row the read returned is counted: more rows
		// than returned means committed events the read could not (yet)
		// return. Testing "sort_key >= horizon" instead would race: the
		// horizon can pass them between the two statements, and the
		// reader would then wait for a wake-up that never comes.
		pending:      fmt.Sprintf(`SELECT count(*) FROM (SELECT 1 FROM %s WHERE (sort_key, seq) > ($1, $2) LIMIT $3) c`, events),
		pendingCat:   fmt.Sprintf(`SELECT count(*) FROM (SELECT 1 FROM %s WHERE %s AND (sort_key, seq) > ($1, $2) LIMIT $3) c`, events, categoryMatch("$4")),
		head:         fmt.Sprintf(`SELECT sort_key, seq FROM %s ORDER BY sort_key DESC, seq DESC LIMIT 1`, events),
		countBetween: fmt.Sprintf(`SELECT count(*) FROM (SELECT 1 FROM %s WHERE (sort_key, seq) > ($1, $2) AND (sort_key, seq) <= ($3, $4) LIMIT $5) c`, events),
		// The oldest transaction that holds the horizon back, anywhere in the
		// cluster: its age is how long delivery has been held up.
		horizonAge: `SELECT coalesce((SELECT extract(epoch FROM now() - xact_start) FROM pg_stat_activity
WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid() ORDER BY age(backend_xid) DESC LIMIT 1), 0)::float8`,
		oldestAfter: fmt.Sprintf(`SELECT recorded_at FROM %s WHERE (sort_key, seq) > ($1, $2) ORDER BY sort_key, seq LIMIT 1`, events),
		consumers: fmt.Sprintf(`SELECT name, major, minor, coalesce(owner, ''), generation, lease_until, heartbeat_at, updated_at
FROM %s ORDER BY name`, cps),
		acquire: fmt.Sprintf(`
INSERT INTO %[1]s AS c (name, owner, generation, lease_until, heartbeat_at) VALUES ($1, $2, 1, now() + $3::interval, now())
ON CONFLICT (name) DO UPDATE
SET generation = CASE WHEN c.owner IS NOT DISTINCT FROM EXCLUDED.owner THEN c.generation ELSE c.generation + 1 END,
    owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until, heartbeat_at = now()
WHERE c.owner IS NULL OR c.owner = EXCLUDED.owner OR c.lease_until < now()
RETURNING generation, major, minor`, cps),
		renew:    fmt.Sprintf(`UPDATE %s SET lease_until = now() + $4::interval, heartbeat_at = now() WHERE name = $1 AND owner = $2 AND generation = $3`, cps),
		release:  fmt.Sprintf(`UPDATE %s SET owner = NULL, lease_until = NULL WHERE name = $1 AND owner = $2 AND generation = $3`, cps),
		position: fmt.Sprintf(`SELECT major, minor FROM %s WHERE name = $1`, cps),
		commit: fmt.Sprintf(`UPDATE %s SET major = $4, minor = $5, updated_at = now(), heartbeat_at = now()
WHERE name = $1 AND owner = $2 AND generation = $3`, cps),
	}
}

// Whether an append statement checks its event ids first.
const (
	noIDCheck = 0
	idCheck   = 1
)

// appendStatements builds the append statements: create starts a stream (or
// moves it on when it exists: a concurrent creator may have won), move moves
// an existing stream on. A stream moves on only when the expected version
// holds ($9 < 0 means any); the sort_key never decreases along a stream,
// which keeps per-stream order in the global feed.
//
// The [idCheck] variants also require that none of the append's ids is
// stored yet (the fresh condition). When one is, the head does not move and
// the statement returns no rows, like a version conflict, so a rerun of an
// append inside a caller's transaction is recognised (by the ids) without
// aborting it. A concurrent append of the same ids that commits after this
// statement's snapshot still ends in the unique violation on event_id.
// Append runs the [noIDCheck] variants: its statement is its transaction,
// so the unique violation aborts nothing of the caller's, and the look-up
// that follows it tells a replay from a reused id just as well. The check
// is an extra plan node and index scan in every append, a rerun is rare.
//
// move is a plain UPDATE, not an upsert: INSERT ... ON CONFLICT DO UPDATE
// probes the primary key for the speculative insert, locks the row (its own
// WAL record) and then updates it, which costs measurably more server time
// per append than the UPDATE's lock-and-update (see the package doc).
func appendStatements(streams, events, insertEvents string) (create, move [2]string) {
	fresh := fmt.Sprintf(`NOT EXISTS (SELECT 1 FROM %s WHERE event_id = ANY($3::uuid[]))`, events)
	for check, cond := range []string{"true", fresh} {
		create[check] = fmt.Sprintf(`
WITH head AS (
	INSERT INTO %[1]s AS st (stream_id, version, sort_key) SELECT $1, $2, %[2]s WHERE %[3]s
	ON CONFLICT (stream_id) DO UPDATE
	SET version = st.version + EXCLUDED.version,
	    sort_key = greatest(st.sort_key, EXCLUDED.sort_key),
	    updated_at = now()
	WHERE ($9::bigint < 0 OR st.version = $9::bigint) AND %[3]s
	RETURNING st.version, st.sort_key
)`, streams, xactID, cond) + insertEvents
		move[check] = fmt.Sprintf(`
WITH head AS (
	UPDATE %[1]s AS st
	SET version = st.version + $2, sort_key = greatest(st.sort_key, %[2]s), updated_at = now()
	WHERE st.stream_id = $1 AND ($9::bigint < 0 OR st.version = $9::bigint) AND %[3]s
	RETURNING st.version, st.sort_key
)`, streams, xactID, cond) + insertEvents
	}
	return create, move
}

// categoryMatch matches a stream id equal to the category or starting with
// category + "-". The indexed category column answers when the category has
// no "-" of its own (the common case); starts_with needs no LIKE escaping.
func categoryMatch(param string) string {
	return fmt.Sprintf(`(CASE WHEN strpos(%[1]s, '-') = 0 THEN category = %[1]s
ELSE (stream_id = %[1]s OR starts_with(stream_id, %[1]s || '-')) END)`, param)
}

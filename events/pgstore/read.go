package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// ReadStream returns events of one stream from fromVersion on.
func (s *Store) ReadStream(ctx context.Context, streamID string, fromVersion int64, limit int) ([]events.Envelope, error) {
	if s.isClosed() {
		return nil, errClosed
	}
	return s.readStream(ctx, s.pool, streamID, fromVersion, limit)
}

func (s *Store) readStream(ctx context.Context, db execer, streamID string, fromVersion int64, limit int) ([]events.Envelope, error) {
	if err := events.ValidateStreamID(streamID); err != nil {
		return nil, err
	}
	if err := events.ValidateFromVersion(fromVersion); err != nil {
		return nil, err
	}
	lim := int64(limit)
	if limit <= 0 {
		lim = 1<<63 - 1
	}
	rows, err := db.Query(ctx, s.q.readStream, streamID, fromVersion, lim)
	if err != nil {
		return nil, fmt.Errorf("pgstore: read stream %q: %w", streamID, classify(err))
	}
	return scanEnvelopes(rows)
}

// StreamVersion returns the number of events in the stream.
func (s *Store) StreamVersion(ctx context.Context, streamID string) (int64, error) {
	if s.isClosed() {
		return 0, errClosed
	}
	if err := events.ValidateStreamID(streamID); err != nil {
		return 0, err
	}
	return s.streamVersion(ctx, s.pool, streamID)
}

func (s *Store) streamVersion(ctx context.Context, db execer, streamID string) (int64, error) {
	var v int64
	if err := db.QueryRow(ctx, s.q.streamVer, streamID).Scan(&v); err != nil {
		return 0, fmt.Errorf("pgstore: version of %q: %w", streamID, classify(err))
	}
	return v, nil
}

// ReadAll reads the global order after a token, up to the read horizon.
func (s *Store) ReadAll(ctx context.Context, after events.Token, limit int) ([]events.Envelope, error) {
	if s.isClosed() {
		return nil, errClosed
	}
	b, err := s.read(ctx, after, feed.Filter{}, limit, false)
	return b.Events, err
}

// ReadFeed implements feed.Source: the filter runs in SQL, and ScannedTo
// comes from the same statement (the same snapshot) as the events, so no
// matching event at or before it can be missed.
func (s *Store) ReadFeed(ctx context.Context, after events.Token, f feed.Filter, limit int) (feed.Batch, error) {
	return s.read(ctx, after, f, limit, true)
}

func (s *Store) read(ctx context.Context, after events.Token, f feed.Filter, limit int, withPending bool) (feed.Batch, error) {
	if s.isClosed() {
		return feed.Batch{}, errClosed
	}
	if err := f.Validate(); err != nil {
		return feed.Batch{}, err
	}
	if limit <= 0 {
		limit = events.DefaultReadLimit
	}
	major, minor, err := tokenArgs(after)
	if err != nil {
		return feed.Batch{}, err
	}
	where, by, fargs := filterClause(f, 4)
	// No transaction: a plain read never takes a transaction id, so
	// readers never hold the horizon back themselves.
	rows, err := s.pool.Query(ctx, s.q.readFeedSQL(where, by, withPending), append([]any{major, minor, limit}, fargs...)...)
	if err != nil {
		return feed.Batch{}, fmt.Errorf("pgstore: read feed: %w", classify(err))
	}
	out, p, err := scanFeed(rows, withPending)
	if err != nil {
		return feed.Batch{}, err
	}
	if len(out.Events) == limit {
		// The read stopped at its limit: it looked no further.
		out.ScannedTo = out.Events[limit-1].Token
	}
	if withPending && len(out.Events) == 0 {
		// Only an empty read needs to know what is pending: a reader that
		// got events reads again anyway.
		out.Pending = p.matched
		if (where != "" || by.column != "") && p.newest.After(out.ScannedTo) {
			// Unmatched events the read could not look past yet.
			out.Pending = true
		}
	}
	return out, nil
}

// pendingCols are readFeedSQL's pending columns, set on a row without an
// event.
type pendingCols struct {
	matched bool
	newest  events.Token
}

// scanFeed reads readFeedSQL's rows: the newest readable token on every
// row (NULL when nothing is readable), an event on each unless none
// matched, and with pending the pending columns.
func scanFeed(rows pgx.Rows, withPending bool) (feed.Batch, pendingCols, error) {
	defer rows.Close()
	out := feed.Batch{Events: []events.Envelope{}}
	var p pendingCols
	// pgtype's nullable values scan without the allocation per column a
	// pointer costs (most of the client's time per event at 2,000 a page).
	var (
		topKey, topSeq        pgtype.Int8
		seq, sortKey, version pgtype.Int8
		id, stream, typ       pgtype.Text
		schemaVersion         pgtype.Int4
		payload, meta         []byte
		recordedAt            pgtype.Timestamptz
		matched               pgtype.Bool
		newestKey, newestSeq  pgtype.Int8
	)
	dest := []any{&topKey, &topSeq, &seq, &sortKey, &id, &stream, &version, &typ, &schemaVersion, &payload, &meta, &recordedAt}
	if withPending {
		dest = append(dest, &matched, &newestKey, &newestSeq)
	}
	for rows.Next() {
		payload, meta = nil, nil // scanned into fresh slices, not reused
		if err := rows.Scan(dest...); err != nil {
			return feed.Batch{}, p, fmt.Errorf("pgstore: scan event: %w", classify(err))
		}
		if topKey.Valid {
			out.ScannedTo = events.MakeToken(uint64(topKey.Int64), uint64(topSeq.Int64))
		}
		if !seq.Valid {
			p.matched = matched.Bool
			if newestKey.Valid {
				p.newest = events.MakeToken(uint64(newestKey.Int64), uint64(newestSeq.Int64))
			}
			continue
		}
		e := events.Envelope{
			ID: id.String, StreamID: stream.String, Version: version.Int64, Type: typ.String, SchemaVersion: int(schemaVersion.Int32),
			Payload: json.RawMessage(payload), RecordedAt: recordedAt.Time,
			Token: events.MakeToken(uint64(sortKey.Int64), uint64(seq.Int64)),
		}
		if err := decodeMetadata(meta, &e.Metadata); err != nil {
			return feed.Batch{}, p, fmt.Errorf("pgstore: event %s has unreadable metadata: %w", e.ID, err)
		}
		out.Events = append(out.Events, e)
	}
	if err := rows.Err(); err != nil {
		return feed.Batch{}, p, fmt.Errorf("pgstore: read feed: %w", classify(err))
	}
	return out, p, nil
}

// Head returns the token of the newest committed event.
func (s *Store) Head(ctx context.Context) (events.Token, error) {
	if s.isClosed() {
		return events.Token{}, errClosed
	}
	return s.head(ctx, s.pool, s.q.head)
}

// head runs a head statement on db.
func (s *Store) head(ctx context.Context, db execer, sql string) (events.Token, error) {
	var sortKey, seq int64
	err := db.QueryRow(ctx, sql).Scan(&sortKey, &seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return events.Token{}, nil
	}
	if err != nil {
		return events.Token{}, fmt.Errorf("pgstore: head: %w", classify(err))
	}
	return events.MakeToken(uint64(sortKey), uint64(seq)), nil
}

// MaxCount bounds CountBetween so a far-behind reader costs a bounded scan.
const MaxCount = 1_000_000

// CountBetween counts events after `after` up to and including upTo, capped
// at MaxCount.
func (s *Store) CountBetween(ctx context.Context, after, upTo events.Token) (int64, error) {
	if s.isClosed() {
		return 0, errClosed
	}
	a1, a2, err := tokenArgs(after)
	if err != nil {
		return 0, err
	}
	b1, b2, err := tokenArgs(upTo)
	if err != nil {
		return 0, err
	}
	if !after.Before(upTo) {
		return 0, nil
	}
	var n int64
	if err := s.pool.QueryRow(ctx, s.q.countBetween, a1, a2, b1, b2, MaxCount).Scan(&n); err != nil {
		return 0, fmt.Errorf("pgstore: count events: %w", classify(err))
	}
	return n, nil
}

// HorizonAge returns how long the oldest open transaction holding a
// transaction id has been running: while it runs, no event appended after it
// started can be delivered. Zero when nothing holds the horizon.
//
// PostgreSQL shows when a session's transaction began (pg_stat_activity)
// only to its own role, superusers and members of pg_read_all_stats. A
// transaction whose start this store's role cannot see is still found
// through the snapshot's horizon, and timed from the first HorizonAge call
// that found it holding the horizon: the age then starts late by up to one
// call's interval, and a store's first call (a one-shot `converge lag`)
// reports 0 for it. Grant pg_read_all_stats to see the true age at once.
func (s *Store) HorizonAge(ctx context.Context) (time.Duration, error) {
	if s.isClosed() {
		return 0, errClosed
	}
	var secs float64
	var xmin, xmax int64
	if err := s.pool.QueryRow(ctx, s.q.horizonAge).Scan(&secs, &xmin, &xmax); err != nil {
		return 0, fmt.Errorf("pgstore: horizon age: %w", classify(err))
	}
	seen := time.Duration(secs * float64(time.Second))
	return max(seen, s.horizon.age(xmin, xmax, time.Now())), nil
}

// tokenArgs turns a token into the two bigint columns it was made from,
// refusing tokens no PostgreSQL store could have produced.
func tokenArgs(t events.Token) (int64, int64, error) {
	if err := feed.ValidateToken(t); err != nil {
		return 0, 0, err
	}
	return int64(t.Major()), int64(t.Minor()), nil
}

// scanEnvelopes reads a stream's rows. None is an empty slice, not nil,
// as in memory: a stream read encodes to JSON as [] from either store.
func scanEnvelopes(rows pgx.Rows) ([]events.Envelope, error) {
	defer rows.Close()
	out := []events.Envelope{}
	for rows.Next() {
		var (
			e             events.Envelope
			seq, sortKey  int64
			schemaVersion int32
			payload, meta []byte
		)
		if err := rows.Scan(&seq, &sortKey, &e.ID, &e.StreamID, &e.Version, &e.Type, &schemaVersion, &payload, &meta, &e.RecordedAt); err != nil {
			return nil, fmt.Errorf("pgstore: scan event: %w", err)
		}
		e.SchemaVersion = int(schemaVersion)
		e.Payload = json.RawMessage(payload)
		if err := decodeMetadata(meta, &e.Metadata); err != nil {
			return nil, fmt.Errorf("pgstore: event %s has unreadable metadata: %w", e.ID, err)
		}
		e.Token = events.MakeToken(uint64(sortKey), uint64(seq))
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: read events: %w", classify(err))
	}
	return out, nil
}

// decodeMetadata decodes stored metadata. Most events carry none, stored
// as {}: those skip the decoder, which cost a reader about a fifth of its
// time per event.
func decodeMetadata(b []byte, m *events.Metadata) error {
	if string(b) == "{}" {
		*m = events.Metadata{}
		return nil
	}
	if err := json.Unmarshal(b, m); err != nil {
		return err
	}
	// encoding/json takes "Correlation_ID" for correlation_id; the SQL
	// that filters and partitions the feed (metadata->>'correlation_id')
	// does not. A key spelled otherwise, in a row written around the store
	// (the store writes these keys as spelled), reads as absent, as it does
	// there: one event then falls to the same partition however it is read.
	corr, cause, extra := topKeys(b)
	if !corr {
		m.CorrelationID = ""
	}
	if !cause {
		m.CausationID = ""
	}
	if !extra {
		m.Extra = nil
	}
	return nil
}

// topKeys reports which of the metadata keys the JSON object b holds at
// its top level, spelled exactly: a scan, without decoding. PostgreSQL
// gives jsonb back with keys unescaped, so the raw bytes are the key.
func topKeys(b []byte) (corr, cause, extra bool) {
	depth, key := 0, false
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '{':
			depth++
			key = depth == 1
		case '[':
			depth++
		case '}', ']':
			depth--
		case ',':
			key = depth == 1
		case '"':
			j := i + 1
			for j < len(b) && b[j] != '"' {
				if b[j] == '\\' {
					j++
				}
				j++
			}
			if key {
				switch string(b[i+1 : min(j, len(b))]) {
				case "correlation_id":
					corr = true
				case "causation_id":
					cause = true
				case "extra":
					extra = true
				}
				key = false
			}
			i = j
		}
	}
	return corr, cause, extra
}

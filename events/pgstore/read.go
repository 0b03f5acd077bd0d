package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// ReadStream returns events of one stream from fromVersion on.
func (s *Store) ReadStream(ctx context.Context, streamID string, fromVersion int64, limit int) ([]events.Envelope, error) {
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
	rows, err := s.pool.Query(ctx, s.q.readStream, streamID, fromVersion, lim)
	if err != nil {
		return nil, fmt.Errorf("pgstore: read stream %q: %w", streamID, classify(err))
	}
	return scanEnvelopes(rows)
}

// StreamVersion returns the number of events in the stream.
func (s *Store) StreamVersion(ctx context.Context, streamID string) (int64, error) {
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
	b, err := s.read(ctx, after, "", limit, false)
	return b.Events, err
}

// ReadFeed implements feed.Source.
func (s *Store) ReadFeed(ctx context.Context, after events.Token, category string, limit int) (feed.Batch, error) {
	return s.read(ctx, after, category, limit, true)
}

func (s *Store) read(ctx context.Context, after events.Token, category string, limit int, withPending bool) (feed.Batch, error) {
	if limit <= 0 {
		limit = events.DefaultReadLimit
	}
	major, minor, err := tokenArgs(after)
	if err != nil {
		return feed.Batch{}, err
	}
	// One round trip, no transaction: a plain read never takes a
	// transaction id, so readers never hold the horizon back themselves.
	batch := &pgx.Batch{}
	if category == "" {
		batch.Queue(s.q.readFeed, major, minor, limit)
	} else {
		batch.Queue(s.q.readFeedCat, major, minor, limit, category)
	}
	if withPending {
		if category == "" {
			batch.Queue(s.q.pending, major, minor, limit+1)
		} else {
			batch.Queue(s.q.pendingCat, major, minor, limit+1, category)
		}
	}
	br := s.pool.SendBatch(ctx, batch)
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return feed.Batch{}, fmt.Errorf("pgstore: read feed: %w", classify(err))
	}
	evs, err := scanEnvelopes(rows)
	if err != nil {
		return feed.Batch{}, err
	}
	out := feed.Batch{Events: evs}
	if withPending {
		var committed int
		if err := br.QueryRow().Scan(&committed); err != nil {
			return feed.Batch{}, fmt.Errorf("pgstore: read feed: %w", classify(err))
		}
		out.Pending = committed > len(evs)
	}
	return out, nil
}

// Head returns the token of the newest committed event.
func (s *Store) Head(ctx context.Context) (events.Token, error) {
	var sortKey, seq int64
	err := s.pool.QueryRow(ctx, s.q.head).Scan(&sortKey, &seq)
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
	if !after.Before(upTo) {
		return 0, nil
	}
	a1, a2, err := tokenArgs(after)
	if err != nil {
		return 0, err
	}
	b1, b2, err := tokenArgs(upTo)
	if err != nil {
		return 0, err
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
func (s *Store) HorizonAge(ctx context.Context) (time.Duration, error) {
	var secs float64
	if err := s.pool.QueryRow(ctx, s.q.horizonAge).Scan(&secs); err != nil {
		return 0, fmt.Errorf("pgstore: horizon age: %w", classify(err))
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// tokenArgs turns a token into the two bigint columns it was made from,
// refusing tokens no PostgreSQL store could have produced.
func tokenArgs(t events.Token) (int64, int64, error) {
	if t.Major() > 1<<63-1 || t.Minor() > 1<<63-1 {
		return 0, 0, fmt.Errorf("%w: token %s is out of range for this store", events.ErrInvalidToken, t)
	}
	return int64(t.Major()), int64(t.Minor()), nil
}

func scanEnvelopes(rows pgx.Rows) ([]events.Envelope, error) {
	defer rows.Close()
	var out []events.Envelope
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
		if err := json.Unmarshal(meta, &e.Metadata); err != nil {
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

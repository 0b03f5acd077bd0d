package pgstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/converge-es/converge/events"
)

// execer is what an append runs on: the pool or a caller's transaction.
type execer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// Append appends evs to streamID in one statement, so the append is atomic
// and needs a single round trip. Feed subscribers in this process are woken
// at once; other processes are notified right after the commit.
func (s *Store) Append(ctx context.Context, streamID string, expected events.ExpectedVersion, evs ...events.Event) (events.AppendResult, error) {
	if s.isClosed() {
		return events.AppendResult{}, events.ErrClosed
	}
	if s.hooks.Wanted(s.cfg.Registry, evs) {
		return s.appendInOwnUnit(ctx, streamID, expected, evs)
	}
	res, err := s.appendOn(ctx, s.pool, streamID, expected, evs)
	if err != nil {
		return res, err
	}
	s.wake.Notify()
	s.notifier.kick("e", s.eventsPayload())
	return res, nil
}

// AppendTx appends inside the caller's transaction, so events commit
// together with whatever else the transaction writes (saga state, an outbox,
// a read model). The events become readable, and the returned token becomes
// reachable, only when tx commits.
//
// A duplicate event id aborts tx (it is a unique violation); a wrong
// expected version does not, so the caller may reload and retry within tx.
//
// Keep such transactions short: until tx ends, its transaction id holds the
// feed's read horizon back for every reader (see the package doc).
func (s *Store) AppendTx(ctx context.Context, tx pgx.Tx, streamID string, expected events.ExpectedVersion, evs ...events.Event) (events.AppendResult, error) {
	if s.isClosed() {
		return events.AppendResult{}, events.ErrClosed
	}
	res, err := s.appendOn(ctx, tx, streamID, expected, evs)
	if err != nil {
		return res, err
	}
	// Delivered by PostgreSQL at commit, and dropped on rollback.
	if _, err := tx.Exec(ctx, s.q.notify, NotifyChannel, s.eventsPayload()); err != nil {
		return events.AppendResult{}, fmt.Errorf("pgstore: notify: %w", err)
	}
	return res, nil
}

func (s *Store) appendOn(ctx context.Context, db execer, streamID string, expected events.ExpectedVersion, evs []events.Event) (events.AppendResult, error) {
	recs, err := events.Prepare(s.cfg.Registry, s.cfg.Limits, streamID, expected, evs)
	if err != nil {
		return events.AppendResult{}, err
	}
	n := len(recs)
	ids := make([]string, n)
	types := make([]string, n)
	svs := make([]int32, n)
	payloads := make([]string, n)
	metas := make([]string, n)
	for i, r := range recs {
		ids[i], types[i], svs[i], payloads[i] = r.ID, r.Raw.Type, int32(r.Raw.SchemaVersion), string(r.Raw.Payload)
		m, err := json.Marshal(r.Metadata)
		if err != nil {
			return events.AppendResult{}, fmt.Errorf("%w: metadata of event %d: %w", events.ErrInvalidEvent, i+1, err)
		}
		metas[i] = string(m)
	}
	sql, cond := s.q.upsertAppend, int64(-1)
	switch expected {
	case events.AnyVersion:
	case events.NoStream:
		cond = 0
	case events.StreamExists:
		sql = s.q.updateAppend
	default:
		sql, cond = s.q.updateAppend, int64(expected)
	}
	rows, err := db.Query(ctx, sql, streamID, int64(n), ids, types, svs, payloads, metas, Category(streamID), cond)
	if err != nil {
		return events.AppendResult{}, s.appendError(streamID, err)
	}
	type landed struct {
		version int64
		tok     events.Token
	}
	var got []landed
	for rows.Next() {
		var seq, sortKey, version int64
		if err := rows.Scan(&seq, &sortKey, &version); err != nil {
			rows.Close()
			return events.AppendResult{}, fmt.Errorf("pgstore: append: %w", err)
		}
		got = append(got, landed{version, events.MakeToken(uint64(sortKey), uint64(seq))})
	}
	if err := rows.Err(); err != nil {
		return events.AppendResult{}, s.appendError(streamID, err)
	}
	count := len(got)
	if count == 0 {
		// The head row did not match the expectation: nothing was written.
		actual, verr := s.streamVersion(ctx, db, streamID)
		if verr != nil {
			return events.AppendResult{}, fmt.Errorf("pgstore: append to %q conflicted, and reading its version failed: %w", streamID, verr)
		}
		return events.AppendResult{}, &events.WrongExpectedVersionError{StreamID: streamID, Expected: expected, Actual: actual}
	}
	if count != n {
		return events.AppendResult{}, fmt.Errorf("pgstore: append to %q stored %d of %d events (this is a bug)", streamID, count, n)
	}
	// RETURNING order is not promised; versions say where each event went.
	slices.SortFunc(got, func(a, b landed) int { return cmp.Compare(a.version, b.version) })
	res := events.AppendResult{
		StreamID:     streamID,
		FirstVersion: got[0].version,
		LastVersion:  got[n-1].version,
		Token:        got[n-1].tok,
		EventIDs:     ids,
		Tokens:       make([]events.Token, n),
	}
	for i, l := range got {
		res.Tokens[i] = l.tok
	}
	return res, nil
}

func (s *Store) appendError(streamID string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505" && strings.Contains(pgErr.ConstraintName, "event_id"):
			return fmt.Errorf("pgstore: append to %q: %w (%s)", streamID, events.ErrDuplicateEvent, pgErr.Detail)
		case pgErr.Code == "42P01":
			return fmt.Errorf("pgstore: append: %w (did you run `converge migrate --schema %s`?)", err, s.cfg.Schema)
		case pgErr.Code == "22P02" || pgErr.Code == "22021" || pgErr.Code == "54000":
			return fmt.Errorf("pgstore: append to %q: %w: %s", streamID, events.ErrInvalidEvent, pgErr.Message)
		}
	}
	return fmt.Errorf("pgstore: append to %q: %w", streamID, err)
}

// Category is the part of a stream id before its first "-": "order-42" is
// in category "order". Feed subscribers can follow one category.
func Category(streamID string) string {
	if i := strings.IndexByte(streamID, '-'); i >= 0 {
		return streamID[:i]
	}
	return streamID
}

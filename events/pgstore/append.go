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
//
// The outcome is never ambiguous to the caller. Event ids are fixed (those
// left empty are generated) before the first attempt. A transient failure
// (ErrUnavailable: the connection was refused or lost, the server is
// restarting or overloaded) is retried within Config.AppendRetry, with the
// same ids: when an attempt may have committed before its reply was lost,
// the next attempt finds its events by id and returns the original result,
// never a second copy. So Append returns one success, or one error that
// says what happened:
//   - ErrUnavailable alone: nothing was written; retry later.
//   - ErrOutcomeUnknown (*events.OutcomeUnknownError): the retries ran out,
//     or ctx ended, while an attempt's commit was unconfirmed. Append the
//     same events again, with the ids in the error, to learn the outcome.
//   - anything else (a conflict, bad input, ErrDuplicateEvent): nothing
//     was written by this call.
//
// Appending events that are already stored, with the same ids, stream,
// positions and content, is idempotent whatever expected version the retry
// states, as long as it describes where they landed (AnyVersion, or the
// Exactly(n) of the first attempt): it returns the original AppendResult
// (with AlreadyStored set) and writes nothing. Reusing an id for anything
// else fails with ErrDuplicateEvent.
func (s *Store) Append(ctx context.Context, streamID string, expected events.ExpectedVersion, evs ...events.Event) (events.AppendResult, error) {
	if s.isClosed() {
		return events.AppendResult{}, events.ErrClosed
	}
	if s.hooks.Wanted(s.cfg.Registry, evs) {
		return s.appendInOwnUnit(ctx, streamID, expected, evs)
	}
	recs, err := events.Prepare(s.cfg.Registry, s.cfg.Limits, streamID, expected, evs)
	if err != nil {
		return events.AppendResult{}, err
	}
	res, err := s.appendRetrying(ctx, streamID, expected, recs)
	if err != nil {
		return events.AppendResult{}, err
	}
	s.wake.Notify()
	s.notifier.kick("e", s.eventsPayload())
	return res, nil
}

// appendOnce is one attempt of Append, on a connection of its own so that
// a failure to get one is known to have sent nothing.
func (s *Store) appendOnce(ctx context.Context, streamID string, expected events.ExpectedVersion, recs []events.Record) (events.AppendResult, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return events.AppendResult{}, fmt.Errorf("pgstore: append to %q: %w", streamID, context.Cause(ctx))
		}
		return events.AppendResult{}, fmt.Errorf("pgstore: append to %q: %w (nothing was written): %w", streamID, events.ErrUnavailable, err)
	}
	defer conn.Release()
	res, err := s.appendOn(ctx, conn, streamID, expected, recs, false)
	if errors.Is(err, errStoredConcurrently) {
		// The statement failed, so nothing of it was written; the ids
		// are readable now.
		return s.matchStored(ctx, conn, streamID, expected, recs, err)
	}
	return res, err
}

// AppendTx appends inside the caller's transaction, so events commit
// together with whatever else the transaction writes (saga state, an outbox,
// a read model). The events become readable, and the returned token becomes
// reachable, only when tx commits.
//
// The caller owns the commit, so AppendTx does not retry. A wrong expected
// version does not abort tx, so the caller may reload and retry within tx.
// A lost connection (ErrUnavailable) loses tx with nothing written. When
// tx's Commit fails without a reply (the connection broke), the commit may
// or may not have happened: run the whole transaction again with the same
// event ids (keep the ids AppendTx returned, or set them up front with
// events.AssignIDs). Appending events that are already stored is
// idempotent, in tx as in Append: AppendTx returns the original result,
// writes nothing and leaves tx usable, so the rerun learns the outcome and
// writes nothing twice. Reusing an id for other events fails with
// ErrDuplicateEvent; if that races with a concurrent append of the same id,
// it comes from PostgreSQL's unique index and aborts tx.
//
// Keep such transactions short: until tx ends, its transaction id holds the
// feed's read horizon back for every reader (see the package doc).
func (s *Store) AppendTx(ctx context.Context, tx pgx.Tx, streamID string, expected events.ExpectedVersion, evs ...events.Event) (events.AppendResult, error) {
	if s.isClosed() {
		return events.AppendResult{}, events.ErrClosed
	}
	recs, err := events.Prepare(s.cfg.Registry, s.cfg.Limits, streamID, expected, evs)
	if err != nil {
		return events.AppendResult{}, err
	}
	res, err := s.appendOn(ctx, tx, streamID, expected, recs, true)
	if err != nil {
		if errors.Is(err, errStoredConcurrently) {
			err = fmt.Errorf("%w (the transaction is aborted: roll it back, then run it again with the same ids)", err)
		}
		return res, err
	}
	// Delivered by PostgreSQL at commit, and dropped on rollback.
	if _, err := tx.Exec(ctx, s.q.notify, NotifyChannel, s.eventsPayload()); err != nil {
		return events.AppendResult{}, fmt.Errorf("pgstore: notify: %w", classify(err))
	}
	return res, nil
}

// errStoredConcurrently marks a unique violation on event_id: some of the
// ids were stored by a transaction this statement's snapshot did not see.
var errStoredConcurrently = errors.New("stored concurrently")

func (s *Store) appendOn(ctx context.Context, db execer, streamID string, expected events.ExpectedVersion, recs []events.Record, inTx bool) (events.AppendResult, error) {
	n := len(recs)
	ids := make([]string, n)
	types := make([]string, n)
	svs := make([]int32, n)
	payloads := make([]string, n)
	metas := make([]string, n)
	for i, r := range recs {
		// Prepare bounds the schema version to int32.
		ids[i], types[i], svs[i], payloads[i] = r.ID, r.Raw.Type, int32(r.Raw.SchemaVersion), string(r.Raw.Payload) //nolint:gosec // checked by Prepare
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
		return events.AppendResult{}, s.appendError(streamID, ids, err, inTx)
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
		return events.AppendResult{}, s.appendError(streamID, ids, err, inTx)
	}
	count := len(got)
	if count == 0 {
		// The head did not move (the expectation failed, or some ids are
		// stored): nothing was written. The ids tell a retry from a
		// conflict.
		return s.matchStored(ctx, db, streamID, expected, recs, nil)
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

// matchStored judges an append that wrote nothing: a retry of an append
// whose events are stored (the original result), a reuse of stored ids
// (ErrDuplicateEvent), or else a version conflict, or cause when given.
func (s *Store) matchStored(ctx context.Context, db execer, streamID string, expected events.ExpectedVersion, recs []events.Record, cause error) (events.AppendResult, error) {
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	rows, err := db.Query(ctx, s.q.eventsByID, ids)
	if err != nil {
		return events.AppendResult{}, lookupError(streamID, err)
	}
	stored, err := scanEnvelopes(rows)
	if err != nil {
		return events.AppendResult{}, lookupError(streamID, err)
	}
	if res, found, err := events.MatchStored(streamID, expected, recs, stored); found {
		if err != nil {
			return events.AppendResult{}, fmt.Errorf("pgstore: %w", err)
		}
		return res, nil
	}
	if cause != nil {
		return events.AppendResult{}, cause
	}
	actual, err := s.streamVersion(ctx, db, streamID)
	if err != nil {
		return events.AppendResult{}, fmt.Errorf("pgstore: append to %q conflicted, and reading its version failed: %w", streamID, classify(err))
	}
	return events.AppendResult{}, &events.WrongExpectedVersionError{StreamID: streamID, Expected: expected, Actual: actual}
}

// lookupError reports a failed look-up after a statement that wrote
// nothing: whatever broke, this attempt stored nothing.
func lookupError(streamID string, err error) error {
	return fmt.Errorf("pgstore: append to %q wrote nothing, and looking its event ids up failed: %w", streamID, classify(err))
}

// appendError explains a failed append statement. Outside a transaction, a
// statement that was sent but not answered may have committed.
func (s *Store) appendError(streamID string, ids []string, err error, inTx bool) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505" && strings.Contains(pgErr.ConstraintName, "event_id"):
			return fmt.Errorf("pgstore: append to %q: %w: %w (%s)", streamID, events.ErrDuplicateEvent, errStoredConcurrently, pgErr.Detail)
		case pgErr.Code == "42P01":
			return fmt.Errorf("pgstore: append: %w (did you run `converge migrate --schema %s`?)", err, s.cfg.Schema)
		case pgErr.Code == "22P02" || pgErr.Code == "22021" || pgErr.Code == "54000":
			// Prepare refuses what PostgreSQL would; this is a safety net.
			return fmt.Errorf("pgstore: append to %q: %w: %s", streamID, events.ErrInvalidEvent, pgErr.Message)
		}
	}
	if !inTx && sentUnanswered(err) {
		return &events.OutcomeUnknownError{StreamID: streamID, EventIDs: ids, Err: fmt.Errorf("pgstore: %w", classify(err))}
	}
	return fmt.Errorf("pgstore: append to %q: %w", streamID, classify(err))
}

// Category is the part of a stream id before its first "-": "order-42" is
// in category "order". Feed subscribers can follow one category.
func Category(streamID string) string {
	if i := strings.IndexByte(streamID, '-'); i >= 0 {
		return streamID[:i]
	}
	return streamID
}

package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

var _ feed.HookedSource = (*Store)(nil)

// AddAppendHook installs h on every later append, through the store or its
// units, until remove is called. AppendTx does not run hooks: its
// transaction belongs to the caller, not to a unit a hook could write
// through.
func (s *Store) AddAppendHook(h feed.AppendHook) (remove func()) { return s.hooks.Add(h) }

// appendInOwnUnit is one attempt of an append that hooks want, in a unit
// that commits at once. A COMMIT sent without a reply may have committed:
// it is reported as an unknown outcome (with the events' ids), which
// Append's retries resolve by finding the events stored.
//
// An append of the same ids committed by another transaction after this
// unit's snapshot ends the unit's statement in a unique violation
// (errStoredConcurrently), which aborts it. The ids are committed by
// then (the violation waits for the other transaction to end), so the
// append runs once more in a unit of its own, whose check of the ids sees
// them: a repeat of the same events returns the original result, as an
// append without hooks does, and only a reuse of the ids for other events
// fails with ErrDuplicateEvent.
func (s *Store) appendInOwnUnit(ctx context.Context, streamID string, expected events.ExpectedVersion, ids []string, evs []events.Event) (events.AppendResult, error) {
	u := s.newUnit()
	res, err := u.Append(ctx, streamID, expected, evs...)
	if errors.Is(err, errStoredConcurrently) {
		_ = u.Rollback(ctx)
		u = s.newUnit()
		res, err = u.Append(ctx, streamID, expected, evs...)
	}
	if err != nil {
		_ = u.Rollback(ctx)
		return events.AppendResult{}, err
	}
	if err := u.Commit(ctx); err != nil {
		// Not sentUnanswered: pgx may call a batch's COMMIT "safe to
		// retry" (conn closed) when the connection broke after sending it.
		// Without the server's answer, the commit may have happened.
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) && (isUnavailable(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			return events.AppendResult{}, &events.OutcomeUnknownError{StreamID: streamID, EventIDs: ids, Err: fmt.Errorf("pgstore: %w", classify(err))}
		}
		return events.AppendResult{}, classify(err)
	}
	return res, nil
}

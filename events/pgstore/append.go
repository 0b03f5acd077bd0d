package pgstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/converge-es/converge/events"
)

// execer is what an append runs on: the pool or a caller's transaction.
type execer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
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
// An append that AppendHooks want (a strong projection's) runs in a unit of
// its own, to commit with the hooks' writes, and keeps these promises too.
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
	if err := events.CheckReserved(evs); err != nil {
		return events.AppendResult{}, err
	}
	if s.hooks.Wanted(s.cfg.Registry, evs) {
		// The same promises through a unit of its own: fixed ids, the same
		// retries, an unconfirmed commit reported as such.
		evs = events.AssignIDs(evs)
		ids := make([]string, len(evs))
		for i, ev := range evs {
			ids[i] = ev.ID
		}
		return s.appendRetrying(ctx, streamID, ids, func(ctx context.Context) (events.AppendResult, error) {
			return s.appendInOwnUnit(ctx, streamID, expected, ids, evs)
		})
	}
	recs, err := events.Prepare(s.cfg.Registry, s.cfg.Limits, streamID, expected, evs)
	if err != nil {
		return events.AppendResult{}, err
	}
	ids := make([]string, len(recs))
	for i, r := range recs {
		ids[i] = r.ID
	}
	res, err := s.appendRetrying(ctx, streamID, ids, func(ctx context.Context) (events.AppendResult, error) {
		return s.appendOnce(ctx, streamID, expected, recs)
	})
	if err != nil {
		return events.AppendResult{}, err
	}
	s.wake.Notify()
	s.notifier.kick("e", s.eventsPayload())
	return res, nil
}

// ctxErr is why ctx ended: its cause, still matching context.Canceled or
// DeadlineExceeded when the cause is the caller's own error, so that a
// failure for want of time is never read as an answer of the server.
func ctxErr(ctx context.Context) error {
	err, cause := ctx.Err(), context.Cause(ctx)
	if cause == nil || errors.Is(cause, err) {
		return err
	}
	return fmt.Errorf("%w: %w", cause, err)
}

// appendOnce is one attempt of Append, on a connection of its own so that
// a failure to get one is known to have sent nothing.
func (s *Store) appendOnce(ctx context.Context, streamID string, expected events.ExpectedVersion, recs []events.Record) (events.AppendResult, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return events.AppendResult{}, fmt.Errorf("pgstore: append to %q: %w", streamID, ctxErr(ctx))
		}
		return events.AppendResult{}, fmt.Errorf("pgstore: append to %q: %w (nothing was written): %w", streamID, events.ErrUnavailable, err)
	}
	defer conn.Release()
	res, err := s.appendOn(ctx, conn, streamID, expected, recs, false, queueWhenHot)
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
// Nor does a concurrent append to the same stream: an AppendTx whose
// expected version the committed events meet waits for it to end and, if
// it committed, appends after it when the stream still meets the
// expectation (AnyVersion, say) or reports the conflict, with tx still
// usable; one they do not meet fails at once (see events.Unit).
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
// These promises hold in a READ COMMITTED transaction, PostgreSQL's
// default. In a REPEATABLE READ or SERIALIZABLE tx, a concurrent append to
// the same stream fails tx with a serialization error (SQLSTATE 40001)
// instead: run the whole transaction again, as for any serialization
// failure.
//
// Keep such transactions short: until tx ends, its transaction id holds the
// feed's read horizon back for every reader (see the package doc). AppendTx
// sends its wake-up NOTIFY inside tx, as only PostgreSQL knows when tx
// commits; that makes the commit take PostgreSQL's notify lock, so prefer a
// unit of work, which notifies after its commit, for high write rates. On a
// unit's own transaction (TxFromContext) AppendTx sends none: the unit
// notifies after its commit, as for its own appends.
//
// AppendTx takes a transaction-level advisory lock on each stream it
// appends to, held until tx ends, so that appenders of one stream take
// turns instead of racing (see the package doc). A transaction appending to
// very many streams holds as many locks: past what PostgreSQL's lock table
// holds (max_locks_per_transaction times max_connections, shared by all
// sessions) it fails with "out of shared memory". Split such an import into
// several transactions, or append in a unit, which takes the lock only on
// contended streams.
func (s *Store) AppendTx(ctx context.Context, tx pgx.Tx, streamID string, expected events.ExpectedVersion, evs ...events.Event) (events.AppendResult, error) {
	if s.isClosed() {
		return events.AppendResult{}, events.ErrClosed
	}
	if err := events.CheckReserved(evs); err != nil {
		return events.AppendResult{}, err
	}
	recs, err := events.Prepare(s.cfg.Registry, s.cfg.Limits, streamID, expected, evs)
	if err != nil {
		return events.AppendResult{}, err
	}
	var res events.AppendResult
	ut, inUnit := tx.(*unitTx)
	// A unit of another Store (another schema on the same pool) would
	// announce the append on its own schema: this store notifies itself.
	inUnit = inUnit && ut.u.s == s
	if inUnit {
		// A unit's transaction from TxFromContext: the unit knows which
		// streams it appended to.
		res, err = s.appendOn(ctx, tx, streamID, expected, recs, true, ut.u.queueingFor(streamID))
		if err == nil {
			ut.u.appendedTo(streamID)
		}
	} else {
		q := queueAlways
		if s.unqueuedInTx {
			q = queueWhenHot
		}
		res, err = s.appendOn(ctx, tx, streamID, expected, recs, true, q)
	}
	if err != nil {
		if errors.Is(err, errStoredConcurrently) {
			err = fmt.Errorf("%w (the transaction is aborted: roll it back, then run it again with the same ids)", err)
		}
		return res, err
	}
	// Delivered by PostgreSQL at commit, and dropped on rollback. This is
	// the one NOTIFY sent inside a transaction: the caller owns the commit,
	// so nothing else learns when it happens, and readers in this process
	// hear of it through the same LISTEN connection as everyone else's.
	// Appends through a unit of work (feed.CheckpointStore.Begin, or any
	// handler's unit) notify after their commit instead, without the
	// commit-time lock a NOTIFY in a transaction takes.
	if inUnit {
		// The unit's own transaction (TxFromContext): the unit recorded the
		// append and notifies after its commit, without the lock.
		return res, nil
	}
	if _, err := tx.Exec(ctx, s.q.notify, NotifyChannel, s.eventsPayload()); err != nil {
		return events.AppendResult{}, fmt.Errorf("pgstore: notify: %w", classify(err))
	}
	return res, nil
}

// errStoredConcurrently marks a unique violation on event_id: some of the
// ids are stored, by a transaction this statement's snapshot did not see
// or, since Append's statements do not check the ids first, by any earlier
// one (a replay after a lost reply, or a reused id).
var errStoredConcurrently = errors.New("stored concurrently")

// queueing says when an append queues on its stream's advisory lock (see
// hotStreams).
type queueing int

const (
	// queueWhenHot queues on a contended stream only: Append, and a
	// unit's first append to a stream.
	queueWhenHot queueing = iota
	// queueAlways queues on every stream: AppendTx, which cannot know
	// whether its transaction appended to the stream before.
	queueAlways
	// queueNever takes no lock: a unit's later append to a stream it
	// appended to already, which holds the lock or the stream's newest
	// versions, so whoever holds the lock waits for it and not the other
	// way round.
	queueNever
)

func (s *Store) appendOn(ctx context.Context, db execer, streamID string, expected events.ExpectedVersion, recs []events.Record, inTx bool, q queueing) (events.AppendResult, error) {
	n := len(recs)
	ids, params, err := appendParams(recs)
	if err != nil {
		return events.AppendResult{}, err
	}
	// Inside a caller's transaction a unique violation would abort it, so
	// the statement checks the ids first and yields to a concurrent
	// appender without one (see appendSQL).
	var sql, queuedSQL string
	switch {
	case inTx && n == 1:
		sql, queuedSQL = s.q.txOne, s.q.txOneQueued
	case inTx:
		sql, queuedSQL = s.q.txMany, s.q.txManyQueued
	case n == 1:
		sql, queuedSQL = s.q.one, s.q.one
	default:
		sql, queuedSQL = s.q.many, s.q.many
	}
	cond := int64(expectAny)
	switch expected {
	case events.AnyVersion:
	case events.NoStream:
		cond = 0
	case events.StreamExists:
		cond = expectExists
	default:
		cond = int64(expected)
	}
	args := append([]any{streamID}, params...)
	args = append(args, Category(streamID), cond)
	var got []landed
	if !inTx && !s.cfg.DisableListen { // see streamHeads: such a store never guesses
		got, err = s.appendAfterGuess(ctx, db, streamID, expected, ids, args)
		if err != nil {
			return events.AppendResult{}, err
		}
	}
	for lost := 0; len(got) == 0; lost++ {
		var err error
		// A transaction that appended to a stream without the lock and
		// then queued for it, once the stream turned contended, would
		// deadlock with one holding the lock and waiting for that first
		// append's version: see queueing.
		queue := q == queueAlways || (q == queueWhenHot && s.hot.has(streamID, time.Now()))
		if queue {
			got, err = s.runAppendQueued(ctx, db, streamID, ids, inTx, queuedSQL, args)
		} else {
			got, err = s.runAppend(ctx, db, streamID, ids, inTx, sql, args)
		}
		if err != nil && !errors.Is(err, errVersionTaken) {
			return events.AppendResult{}, err
		}
		if len(got) > 0 {
			break
		}
		// Nothing was written: the expectation failed, some ids are
		// stored, a concurrent append took the next version first, or
		// (queued in a transaction) another one held the stream's lock.
		// The ids tell a retry from the rest, and the version a conflict
		// from a lost race.
		res, err := s.matchStored(ctx, db, streamID, expected, recs, nil)
		var wrong *events.WrongExpectedVersionError
		if !errors.As(err, &wrong) || !raceLost(expected, wrong.Actual) {
			return res, err
		}
		s.hot.mark(streamID, time.Now())
		if q == queueNever {
			// It lost a race, so it holds none of the stream's versions
			// (a savepoint undid its earlier append, or that one found its
			// events stored already): queueing is safe.
			q = queueWhenHot
		}
		if lost == s.maxLostRaces {
			return events.AppendResult{}, fmt.Errorf("pgstore: append to %q: %w: other appends to the stream took its next version %d times in a row; nothing was written, try again",
				streamID, events.ErrUnavailable, lost+1)
		}
	}
	if count := len(got); count != n {
		return events.AppendResult{}, fmt.Errorf("pgstore: append to %q stored %d of %d events (this is a bug)", streamID, count, n)
	}
	// RETURNING order is not promised; versions say where each event went.
	slices.SortFunc(got, func(a, b landed) int { return cmp.Compare(a.version, b.version) })
	if !inTx && !s.cfg.DisableListen {
		// Committed: Append's statement is its own transaction. Without
		// a listening connection the store cannot tell that the server
		// restarted or failed over (the pool reconnects quietly), so it
		// remembers no heads (see streamHeads).
		last := got[n-1]
		s.heads.committed(streamID, last.version, int64(last.tok.Major())) //nolint:gosec // sort keys are transaction ids, far below 2^63
	}
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

// appendAfterGuess runs Append's statement without the head look-up when
// the stream's head can be guessed (see streamHeads): the remembered head,
// or none at all for NoStream. It returns nothing, and no error, when
// there is no guess or the guess was wrong (the version was taken, so the
// statement wrote nothing): the append then runs the usual way.
func (s *Store) appendAfterGuess(ctx context.Context, db execer, streamID string, expected events.ExpectedVersion, ids []string, args []any) ([]landed, error) {
	now := time.Now()
	if s.hot.has(streamID, now) {
		return nil, nil
	}
	h, known := s.heads.guess(streamID)
	switch {
	case expected == events.NoStream && known:
		return nil, nil // not new: the usual way reports the conflict
	case expected == events.NoStream:
		h = streamHead{}
	case !known:
		return nil, nil
	case expected != events.AnyVersion && expected != events.StreamExists && int64(expected) != h.version:
		return nil, nil
	}
	sql := s.q.guessMany
	if len(ids) == 1 {
		sql = s.q.guessOne
	}
	gargs := append(args[:len(args)-1:len(args)-1], h.version, h.sortKey)
	got, err := s.runAppend(ctx, db, streamID, ids, false, sql, gargs)
	if errors.Is(err, errVersionTaken) {
		// Another writer took the version: a race lost, as far as anyone
		// can tell, so the stream queues, and is not guessed, for a while
		// (see hotStreams).
		s.heads.forget(streamID)
		s.hot.mark(streamID, now)
		return nil, nil
	}
	return got, err
}

// appendParams returns the events' ids and the statement parameters $2 to
// $6 for them (see appendSQL): scalars for one event, arrays for more.
// Schema versions and metadata are sent only when some event has them: a
// NULL stands for the defaults.
func appendParams(recs []events.Record) ([]string, []any, error) {
	n := len(recs)
	ids := make([]string, n)
	uuids := make([]pgtype.UUID, n)
	types := make([]string, n)
	payloads := make([]string, n)
	var svs []int32
	var metas []string
	for i, r := range recs {
		ids[i], types[i], payloads[i] = r.ID, r.Raw.Type, string(r.Raw.Payload)
		u, err := uuid.Parse(r.ID)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: event %d id %q is not a UUID", events.ErrInvalidEvent, i+1, r.ID)
		}
		uuids[i] = pgtype.UUID{Bytes: u, Valid: true}
		if r.Raw.SchemaVersion != 1 && svs == nil {
			svs = make([]int32, n)
			for j := range i {
				svs[j] = 1
			}
		}
		if svs != nil {
			svs[i] = int32(r.Raw.SchemaVersion) //nolint:gosec // Prepare bounds it to int32
		}
		if !emptyMetadata(r.Metadata) && metas == nil {
			metas = make([]string, n)
			for j := range i {
				metas[j] = "{}"
			}
		}
		if metas != nil {
			m, err := json.Marshal(r.Metadata)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: metadata of event %d: %w", events.ErrInvalidEvent, i+1, err)
			}
			metas[i] = string(m)
		}
	}
	if n != 1 {
		return ids, []any{uuids, types, svs, payloads, metas}, nil
	}
	var sv, meta any
	if svs != nil {
		sv = svs[0]
	}
	if metas != nil {
		meta = metas[0]
	}
	return ids, []any{uuids[0], types[0], sv, payloads[0], meta}, nil
}

// maxLostRaces bounds how often one append runs again after concurrent
// appends to its stream took the version it was about to write. Each lost
// race means another append committed, so the stream is moving; an append
// that keeps losing reports ErrUnavailable rather than spin (Append's
// retries then back off).
const maxLostRaces = 64

// raceLost reports whether an append that wrote nothing, to a stream now at
// version actual, lost a race rather than failed its expectation: the
// stream meets the expectation now. AnyVersion fits any version, and
// StreamExists any but 0; an Exactly(n) or NoStream append can only find
// the stream where it expected it after a queued one in a transaction
// found the stream's lock taken by another (see runAppendQueued).
func raceLost(expected events.ExpectedVersion, actual int64) bool {
	return expected.Satisfied(actual)
}

// errVersionTaken marks a unique violation on (stream_id, version): a
// concurrent append to the stream took the version Append's statement was
// about to write, and committed. The statement wrote nothing.
var errVersionTaken = errors.New("version taken")

// landed is where one appended event went.
type landed struct {
	version int64
	tok     events.Token
}

// runAppend runs one append statement and returns the events it stored,
// none when the head did not move.
func (s *Store) runAppend(ctx context.Context, db execer, streamID string, ids []string, inTx bool, sql string, args []any) ([]landed, error) {
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, s.appendError(streamID, ids, err, inTx)
	}
	got, err := scanLanded(rows)
	if err != nil {
		return nil, s.appendError(streamID, ids, err, inTx)
	}
	return got, nil
}

// runAppendQueued runs an append statement behind the stream's advisory
// lock, for a stream that is contended (see hotStreams). The lock and the
// statement go in one batch, so in one round trip and, for Append, one
// implicit transaction: the lock is held until the append's transaction
// ends, and the statement, taking its snapshot after the lock, sees the
// previous holder's events.
//
// Only an append whose expectation the stream's committed head meets
// queues (see queries.streamLock): one that fails it fails at once, as on
// a stream that is not contended, rather than wait for the holder of the
// lock (an open unit, say) and be judged on what it committed. In a
// transaction, the statement (sql is a queued one, see appendSQL) then
// also writes nothing unless the transaction holds the lock, since it
// must not append without it and queue for it later (see queueing): if
// the head moved to meet the expectation between the two statements,
// the append runs again (raceLost).
func (s *Store) runAppendQueued(ctx context.Context, db execer, streamID string, ids []string, inTx bool, sql string, args []any) ([]landed, error) {
	key, cond := s.cfg.Schema+"."+streamID, args[len(args)-1]
	if inTx {
		args = append(args[:len(args):len(args)], key)
	}
	b := &pgx.Batch{}
	b.Queue(s.q.streamLock, key, streamID, cond)
	b.Queue(sql, args...)
	br := db.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return nil, s.appendError(streamID, ids, err, inTx)
	}
	rows, err := br.Query()
	if err != nil {
		_ = br.Close()
		return nil, s.appendError(streamID, ids, err, inTx)
	}
	got, err := scanLanded(rows)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, s.appendError(streamID, ids, err, inTx)
	}
	return got, nil
}

// scanLanded reads an append statement's rows and closes them.
func scanLanded(rows pgx.Rows) ([]landed, error) {
	var got []landed
	for rows.Next() {
		var seq, sortKey, version int64
		if err := rows.Scan(&seq, &sortKey, &version); err != nil {
			rows.Close()
			return nil, err
		}
		got = append(got, landed{version, events.MakeToken(uint64(sortKey), uint64(seq))})
	}
	return got, rows.Err()
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
		case pgErr.Code == "23505" && strings.Contains(pgErr.ConstraintName, "stream_id_version") && !inTx:
			return fmt.Errorf("pgstore: append to %q: %w", streamID, errVersionTaken)
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

// emptyMetadata reports metadata that encodes as "{}", the column default.
func emptyMetadata(m events.Metadata) bool {
	return m.CorrelationID == "" && m.CausationID == "" && len(m.Extra) == 0
}

// Category is the part of a stream id before its first "-": "order-42" is
// in category "order". Feed subscribers can follow one category.
func Category(streamID string) string {
	if i := strings.IndexByte(streamID, '-'); i >= 0 {
		return streamID[:i]
	}
	return streamID
}

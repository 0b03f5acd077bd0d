package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// unit is the PostgreSQL feed.Unit: one transaction, begun at its first
// use, so a unit that only moves a checkpoint costs one UPDATE.
type unit struct {
	s *Store
	// writes counts the calls that may have written (feed.WriteCounter).
	writes atomic.Uint64

	mu sync.Mutex
	// conn is the pool connection the transaction runs on. The unit holds
	// it, not a pool transaction, so that COMMIT can travel in the commit's
	// batch: the connection goes back to the pool once it is idle again.
	conn *pgxpool.Conn
	tx   pgx.Tx
	// broken records a failed statement that took held writes with it:
	// the unit must not commit without them.
	broken error
	done   bool
	// streams are the streams the unit appended to (see queueing); when
	// there are any, other processes are notified after the commit.
	streams map[string]struct{}
	// announce makes the commit notify other processes although nothing
	// was appended (feed.Announcer).
	announce bool
	after    []func()
	held     rowBuffer // row writes not yet sent (row_buffer.go)
	// fetched are rows read by Rows.Prefetch, and locked the locks the
	// transaction holds on rows (row_prefetch.go).
	fetched map[rowAddr]fetchedRow
	locked  map[rowAddr]feed.Lock
	handed  *unitTx // the transaction as TxFromContext gave it out
}

var (
	_ feed.Unit        = (*unit)(nil)
	_ feed.Announcer   = (*unit)(nil)
	_ feed.MarkScanner = (*unit)(nil)
)

func (s *Store) newUnit() *unit { return &unit{s: s} }

// txFor returns the unit's transaction, beginning it on first use, with
// the held row writes sent (in the same round trip as the BEGIN): what runs
// on it next sees them.
func (u *unit) txFor(ctx context.Context) (pgx.Tx, error) {
	return u.inTx(ctx, nil, nil)
}

// begin returns the unit's transaction, beginning it on first use (with
// the held writes, as txFor). Once it is begun, the held writes stay held:
// what runs next does not read them.
func (u *unit) begin(ctx context.Context) (pgx.Tx, error) {
	u.mu.Lock()
	tx, done := u.tx, u.done
	u.mu.Unlock()
	if tx != nil && !done {
		return tx, nil
	}
	return u.inTx(ctx, nil, nil)
}

// live fails once the unit has ended: every method checks it first, so an
// ended unit answers ErrUnitEnded whatever it is asked (events.Unit).
func (u *unit) live() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return events.ErrUnitEnded
	}
	return nil
}

// reader returns what a read through the unit runs on: its transaction
// once begun (to see its own writes), else the pool, so a unit that only
// reads never holds a connection or a snapshot.
func (u *unit) reader() (execer, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return nil, events.ErrUnitEnded
	}
	if u.s.isClosed() {
		// The pool is the caller's and may outlive the store: without
		// this, a unit begun before Close would go on reading.
		return nil, errClosed
	}
	if u.tx != nil {
		return u.tx, nil
	}
	return u.s.pool, nil
}

// Registry returns the store's registry.
func (u *unit) Registry() *events.Registry { return u.s.cfg.Registry }

// Append appends inside the unit's transaction (as AppendTx). Other
// processes are notified after the unit commits, not inside it. An append
// that AppendHooks want runs under a savepoint, so a failing hook undoes
// the append and the hook's writes and leaves the unit usable.
func (u *unit) Append(ctx context.Context, streamID string, expected events.ExpectedVersion, evs ...events.Event) (events.AppendResult, error) {
	if err := u.live(); err != nil {
		return events.AppendResult{}, err
	}
	u.writes.Add(1)
	if u.s.isClosed() {
		return events.AppendResult{}, events.ErrClosed
	}
	// Bad input is refused before the transaction begins.
	if err := events.CheckReserved(evs); err != nil {
		return events.AppendResult{}, err
	}
	recs, err := events.Prepare(u.s.cfg.Registry, u.s.cfg.Limits, streamID, expected, evs)
	if err != nil {
		return events.AppendResult{}, err
	}
	hooks := u.s.hooks.Wanting(u.s.cfg.Registry, evs)
	// An append reads no rows, so held writes stay held; hooks run under a
	// savepoint, which must find none held (see appendHooked).
	begin := u.begin
	if len(hooks) > 0 {
		begin = u.txFor
	}
	tx, err := begin(ctx)
	if err != nil {
		return events.AppendResult{}, err
	}
	var res events.AppendResult
	if len(hooks) == 0 {
		res, err = u.s.appendOn(ctx, tx, streamID, expected, recs, true, u.queueingFor(streamID))
	} else {
		res, err = u.appendHooked(ctx, tx, hooks, streamID, expected, evs)
	}
	if err != nil {
		return events.AppendResult{}, err
	}
	u.appendedTo(streamID)
	return res, nil
}

// queueingFor says whether an append of the unit to streamID queues on the
// stream's lock: only on a contended stream it has not appended to yet. An
// append to a stream it appended to already must not queue: it holds the
// stream's newest versions (or the lock), and whoever holds the lock may
// be waiting for those. Unlike AppendTx, a unit appending to many streams
// does not take a lock for each (each would hold a slot of PostgreSQL's
// lock table until the unit ends).
func (u *unit) queueingFor(streamID string) queueing {
	u.mu.Lock()
	defer u.mu.Unlock()
	if _, ok := u.streams[streamID]; ok {
		return queueNever
	}
	return queueWhenHot
}

// appendedTo records an append of the unit to streamID.
func (u *unit) appendedTo(streamID string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.streams == nil {
		u.streams = map[string]struct{}{}
	}
	u.streams[streamID] = struct{}{}
}

func (u *unit) appendHooked(ctx context.Context, tx pgx.Tx, hooks []feed.AppendHook, streamID string, expected events.ExpectedVersion, evs []events.Event) (events.AppendResult, error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return events.AppendResult{}, fmt.Errorf("pgstore: savepoint for append hooks: %w", err)
	}
	u.mu.Lock()
	brokenBefore := u.broken
	u.mu.Unlock()
	res, err := u.runHooks(ctx, tx, hooks, streamID, expected, evs)
	if err != nil {
		// Every write held now was made by the hooks, after the savepoint.
		u.dropHeld()
		if rerr := sp.Rollback(context.WithoutCancel(ctx)); rerr != nil {
			return events.AppendResult{}, errors.Join(err, fmt.Errorf("pgstore: roll back to savepoint: %w", rerr))
		}
		// A statement of the hooks that failed is undone with them: the
		// unit may commit again.
		u.mu.Lock()
		u.broken = brokenBefore
		u.mu.Unlock()
		return events.AppendResult{}, err
	}
	if err := sp.Commit(ctx); err != nil {
		return events.AppendResult{}, fmt.Errorf("pgstore: release savepoint of append hooks: %w", err)
	}
	return res, nil
}

func (u *unit) runHooks(ctx context.Context, tx pgx.Tx, hooks []feed.AppendHook, streamID string, expected events.ExpectedVersion, evs []events.Event) (events.AppendResult, error) {
	hctx := u.Context(ctx)
	var err error
	for _, h := range hooks {
		if evs, err = h.Before(hctx, u, streamID, evs); err != nil {
			return events.AppendResult{}, err
		}
	}
	recs, err := events.Prepare(u.s.cfg.Registry, u.s.cfg.Limits, streamID, expected, evs)
	if err != nil {
		return events.AppendResult{}, err
	}
	res, err := u.s.appendOn(ctx, tx, streamID, expected, recs, true, u.queueingFor(streamID))
	if err != nil {
		return events.AppendResult{}, err
	}
	if res.AlreadyStored {
		// A retry of an append that committed: its hooks ran with it.
		return res, nil
	}
	envs, err := u.s.readStream(ctx, tx, streamID, res.FirstVersion, len(res.Tokens))
	if err != nil {
		return events.AppendResult{}, err
	}
	for _, h := range hooks {
		if err := h.After(hctx, u, envs); err != nil {
			return events.AppendResult{}, err
		}
	}
	return res, nil
}

// ReadStream reads through the unit's transaction once begun, so it sees
// the unit's own appends.
func (u *unit) ReadStream(ctx context.Context, streamID string, fromVersion int64, limit int) ([]events.Envelope, error) {
	db, err := u.reader()
	if err != nil {
		return nil, err
	}
	return u.s.readStream(ctx, db, streamID, fromVersion, limit)
}

// StreamVersion counts the stream's events, the unit's own included.
func (u *unit) StreamVersion(ctx context.Context, streamID string) (int64, error) {
	db, err := u.reader()
	if err != nil {
		return 0, err
	}
	if err := events.ValidateStreamID(streamID); err != nil {
		return 0, err
	}
	return u.s.streamVersion(ctx, db, streamID)
}

// marksKey is where append hooks mark what they applied.
const marksKey = events.AppliedMarksKey

// Unmarked implements feed.MarkScanner. It reads in the unit's
// transaction, so it needs no connection beyond the unit's, and sees the
// unit's own appends beside every committed event.
func (u *unit) Unmarked(ctx context.Context, after events.Token, types []string, mark string, limit int) ([]events.Envelope, error) {
	db, err := u.reader()
	if err != nil {
		return nil, err
	}
	major, minor, err := tokenArgs(after)
	if err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = events.DefaultReadLimit
	}
	rows, err := db.Query(ctx, u.s.q.unmarked, major, minor, types, mark, limit)
	if err != nil {
		return nil, fmt.Errorf("pgstore: read unmarked events: %w", classify(err))
	}
	return scanEnvelopes(rows)
}

// ReadAll reads committed events, as any reader outside the unit.
func (u *unit) ReadAll(ctx context.Context, after events.Token, limit int) ([]events.Envelope, error) {
	if _, err := u.reader(); err != nil {
		return nil, err
	}
	return u.s.ReadAll(ctx, after, limit)
}

// Head returns the newest committed event's token. Once the unit's
// transaction has begun, and while it has appended nothing (its own
// events would show there), it reads on the unit's connection: a unit
// holding a pool's only connection, or a lock other connections wait for,
// must not wait for another.
func (u *unit) Head(ctx context.Context) (events.Token, error) {
	db, err := u.reader()
	if err != nil {
		return events.Token{}, err
	}
	u.mu.Lock()
	appended := len(u.streams) > 0
	u.mu.Unlock()
	if _, inTx := db.(pgx.Tx); !inTx || appended {
		return u.s.Head(ctx)
	}
	return u.s.head(ctx, db, u.s.q.head)
}

// Announce makes a successful Commit notify other processes' readers, as
// an append does (feed.Announcer).
func (u *unit) Announce() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.done {
		u.announce = true
	}
}

// AfterCommit registers fn to run after a successful Commit.
func (u *unit) AfterCommit(fn func()) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.done {
		u.after = append(u.after, fn)
	}
}

// Rows returns the unit's view of the rows table.
func (u *unit) Rows() feed.Rows { return &rows{s: u.s, u: u} }

// Writes implements feed.WriteCounter.
func (u *unit) Writes() uint64 { return u.writes.Load() }

// Positions reads checkpoint positions as committed when the statement
// runs (inside the transaction once begun).
func (u *unit) Positions(ctx context.Context, names ...string) ([]events.Token, error) {
	db, err := u.reader()
	if err != nil {
		return nil, err
	}
	if err := feed.ValidateConsumerNames(names...); err != nil {
		return nil, err
	}
	rows, err := db.Query(ctx, u.s.q.positions, names)
	if err != nil {
		return nil, fmt.Errorf("pgstore: read positions: %w", classify(err))
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (events.Token, error) {
		var major, minor int64
		err := r.Scan(&major, &minor)
		return events.MakeToken(uint64(major), uint64(minor)), err
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: read positions: %w", classify(err))
	}
	return out, nil
}

// OrderAfter implements feed.MarkScanner: the append statements raise
// their sort_key to the transaction's converge.order_after setting, as
// they raise it to the stream's newest sort_key. The setting is local to
// the transaction (and to a savepoint rolled back), so a pooler in
// transaction mode carries nothing over.
func (u *unit) OrderAfter(ctx context.Context, tok events.Token) error {
	major, _, err := tokenArgs(tok)
	if err != nil {
		return err
	}
	tx, err := u.begin(ctx)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, orderAfterSQL, major); err != nil {
		return fmt.Errorf("pgstore: order the unit's appends: %w", classify(err))
	}
	return nil
}

// PositionsNow implements feed.MarkScanner: Positions, which on
// PostgreSQL never fails a commit.
func (u *unit) PositionsNow(ctx context.Context, names ...string) ([]events.Token, error) {
	return u.Positions(ctx, names...)
}

// Context returns ctx carrying the unit (events.UnitFromContext,
// TxFromContext).
func (u *unit) Context(ctx context.Context) context.Context {
	return events.ContextWithUnit(ctx, u)
}

var _ feed.WriteCounter = (*unit)(nil)

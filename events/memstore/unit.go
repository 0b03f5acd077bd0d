package memstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// unit is the in-memory feed.Unit. Its appends reserve versions and tokens
// at once and wait in pending until Commit; its row writes wait in writes.
// Every field after s is guarded by s.mu.
type unit struct {
	s *Store
	// writes counts the calls that may have written (feed.WriteCounter).
	writes atomic.Uint64

	done bool
	// ended is closed when the unit ends: appenders waiting for a stream
	// the unit holds wake up.
	ended chan struct{}
	// firstSeq is the first seq the unit reserved (0: none yet). Readers
	// see nothing from it on until the unit ends.
	firstSeq uint64
	pending  map[string][]events.Envelope
	// ids are the reserved event ids, in append order.
	ids []string
	// rowWrites holds the unit's row writes (a nil value deletes).
	rowWrites map[rowAddr]*rowData
	// rowReads holds the version of each row read with a lock.
	rowReads map[rowAddr]rowRead
	// posReads holds the checkpoint positions read through Positions.
	posReads map[string]events.Token
	after    []func()
	// failed is set by an append that fails on an event id another open
	// unit holds: PostgreSQL aborts the transaction then (a unique
	// violation), so the unit can only roll back, and memory does the same.
	failed error
	// reservedAt is when the unit reserved its first seq (HorizonAge).
	reservedAt time.Time
	// waitsFor is the unit whose stream an append of this one waits for,
	// while it waits (deadlock detection). Guarded by s.mu.
	waitsFor *unit
	// view is what Rows returns: made once, not at every call.
	view rows
}

type rowRead struct {
	ver uint64
	// share is the row's share version at the read, checked at commit
	// when the unit holds the row with LockUpdate.
	share  uint64
	update bool
}

var (
	_ feed.Unit        = (*unit)(nil)
	_ feed.Announcer   = (*unit)(nil)
	_ feed.MarkScanner = (*unit)(nil)
)

func (s *Store) newUnit() *unit {
	u := &unit{
		s:         s,
		ended:     make(chan struct{}),
		pending:   map[string][]events.Envelope{},
		rowWrites: map[rowAddr]*rowData{},
		rowReads:  map[rowAddr]rowRead{},
		posReads:  map[string]events.Token{},
	}
	u.view = rows{s: s, u: u}
	return u
}

// reserve holds envs (one stream's) for the unit. The caller holds s.mu.
func (u *unit) reserve(streamID string, envs []events.Envelope) {
	if u.firstSeq == 0 {
		u.firstSeq = envs[0].Token.Major()
		u.reservedAt = u.s.cfg.Clock.Now()
		u.s.open[u] = struct{}{}
	}
	u.pending[streamID] = append(u.pending[streamID], envs...)
	u.s.owners[streamID] = u
	for _, env := range envs {
		u.ids = append(u.ids, env.ID)
		u.s.reserved[env.ID] = struct{}{}
	}
}

// Registry returns the store's registry.
func (u *unit) Registry() *events.Registry { return u.s.cfg.Registry }

// holds returns the event with id that the unit appended and has not
// committed yet. A nil unit (a plain Append) holds nothing. The reserved
// index answers the common case (an id no unit holds) without scanning the
// unit's pending events, which an append of a large unit would do per
// record. The caller holds s.mu.
func (u *unit) holds(id string) (events.Envelope, bool) {
	if u == nil {
		return events.Envelope{}, false
	}
	if _, held := u.s.reserved[id]; !held {
		return events.Envelope{}, false
	}
	for _, envs := range u.pending {
		for _, env := range envs {
			if env.ID == id {
				return env, true
			}
		}
	}
	return events.Envelope{}, false
}

// Append appends through the unit: the events get their versions and
// tokens now and become readable when the unit commits. Like every method
// of an ended unit, it fails with ErrUnitEnded whatever its input; bad
// input is refused before a done context, as on PostgreSQL.
func (u *unit) Append(ctx context.Context, streamID string, expected events.ExpectedVersion, evs ...events.Event) (events.AppendResult, error) {
	if err := u.live(); err != nil {
		return events.AppendResult{}, err
	}
	u.writes.Add(1)
	if u.s.closed.Load() {
		return events.AppendResult{}, errClosed
	}
	if err := events.CheckReserved(evs); err != nil {
		return events.AppendResult{}, err
	}
	hooks := u.s.hooks.Wanting(u.s.cfg.Registry, evs)
	if len(hooks) == 0 {
		res, err := u.s.appendRecs(ctx, u, streamID, expected, evs)
		if errors.Is(err, errHeldByUnit) || errors.Is(err, errDeadlock) {
			u.fail(err)
		}
		return res, err
	}
	// The events as given are judged before the hooks run, as pgstore
	// does: the hooks' own are judged again in appendRecs.
	if _, err := events.Prepare(u.s.cfg.Registry, u.s.cfg.Limits, streamID, expected, evs); err != nil {
		return events.AppendResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return events.AppendResult{}, err
	}
	snap, err := u.snapshot()
	if err != nil {
		return events.AppendResult{}, err
	}
	res, err := u.appendHooked(ctx, hooks, streamID, expected, evs)
	if err != nil {
		u.restore(snap)
		return events.AppendResult{}, err
	}
	return res, nil
}

func (u *unit) appendHooked(ctx context.Context, hooks []feed.AppendHook, streamID string, expected events.ExpectedVersion, evs []events.Event) (events.AppendResult, error) {
	hctx := u.Context(ctx)
	var err error
	for _, h := range hooks {
		if evs, err = h.Before(hctx, u, streamID, evs); err != nil {
			return events.AppendResult{}, err
		}
	}
	res, err := u.s.appendRecs(ctx, u, streamID, expected, evs)
	if err != nil {
		return events.AppendResult{}, err
	}
	if res.AlreadyStored {
		// A retry of an append that committed: its hooks ran with it.
		return res, nil
	}
	u.s.mu.RLock()
	own := u.pending[streamID]
	envs := sliceStream(nil, own[len(own)-len(res.Tokens):], 1, 0)
	u.s.mu.RUnlock()
	for _, h := range hooks {
		if err := h.After(hctx, u, envs); err != nil {
			return events.AppendResult{}, err
		}
	}
	return res, nil
}

// fail marks the unit as failed, unless it ended.
func (u *unit) fail(err error) {
	u.s.mu.Lock()
	defer u.s.mu.Unlock()
	if !u.done && u.failed == nil {
		u.failed = fmt.Errorf("memstore: the unit failed earlier and can only roll back (as a PostgreSQL transaction aborts): %w", err)
	}
}

// unitSnapshot is what a failed hooked append restores.
type unitSnapshot struct {
	pending   map[string]int
	ids       int
	rowWrites map[rowAddr]*rowData
	rowReads  map[rowAddr]rowRead
	posReads  map[string]events.Token
	after     int
}

func (u *unit) snapshot() (unitSnapshot, error) {
	u.s.mu.RLock()
	defer u.s.mu.RUnlock()
	if u.done {
		return unitSnapshot{}, events.ErrUnitEnded
	}
	snap := unitSnapshot{
		pending:   make(map[string]int, len(u.pending)),
		ids:       len(u.ids),
		rowWrites: maps.Clone(u.rowWrites),
		rowReads:  maps.Clone(u.rowReads),
		posReads:  maps.Clone(u.posReads),
		after:     len(u.after),
	}
	for id, evs := range u.pending {
		snap.pending[id] = len(evs)
	}
	return snap, nil
}

// restore undoes what the unit did since snap. Streams it started to hold
// stay held until it ends, and the seqs it reserved stay unused.
func (u *unit) restore(snap unitSnapshot) {
	u.s.mu.Lock()
	defer u.s.mu.Unlock()
	if u.done {
		return
	}
	for id, evs := range u.pending {
		u.pending[id] = evs[:snap.pending[id]]
	}
	for _, id := range u.ids[snap.ids:] {
		delete(u.s.reserved, id)
	}
	u.ids = u.ids[:snap.ids]
	u.rowWrites, u.rowReads, u.posReads = snap.rowWrites, snap.rowReads, snap.posReads
	u.after = u.after[:snap.after]
}

// ReadStream sees the committed events and the unit's own appends.
func (u *unit) ReadStream(ctx context.Context, streamID string, fromVersion int64, limit int) ([]events.Envelope, error) {
	if err := u.live(); err != nil {
		return nil, err
	}
	if err := u.s.checkInput(ctx, validateStreamRead(streamID, fromVersion)); err != nil {
		return nil, err
	}
	u.s.mu.RLock()
	defer u.s.mu.RUnlock()
	if u.done {
		return nil, events.ErrUnitEnded
	}
	return sliceStream(u.s.streams[streamID], u.pending[streamID], fromVersion, limit), nil
}

// StreamVersion counts the committed events and the unit's own appends.
func (u *unit) StreamVersion(ctx context.Context, streamID string) (int64, error) {
	if err := u.live(); err != nil {
		return 0, err
	}
	if err := u.s.checkInput(ctx, events.ValidateStreamID(streamID)); err != nil {
		return 0, err
	}
	u.s.mu.RLock()
	defer u.s.mu.RUnlock()
	if u.done {
		return 0, events.ErrUnitEnded
	}
	return int64(len(u.s.streams[streamID]) + len(u.pending[streamID])), nil
}

// Unmarked implements feed.MarkScanner: every committed event, behind an
// open unit's reservation or not (as a statement on PostgreSQL sees every
// committed row), and the unit's own appends.
func (u *unit) Unmarked(ctx context.Context, after events.Token, types []string, mark string, limit int) ([]events.Envelope, error) {
	if err := u.live(); err != nil {
		return nil, err
	}
	if err := u.s.checkInput(ctx, feed.ValidateToken(after)); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = events.DefaultReadLimit
	}
	want := func(env events.Envelope) bool {
		return env.Token.After(after) && slices.Contains(types, env.Type) && !feed.Marked(env, mark)
	}
	u.s.mu.RLock()
	defer u.s.mu.RUnlock()
	var out []events.Envelope
	start := sort.Search(len(u.s.log), func(i int) bool { return u.s.log[i].Token.After(after) })
	for _, env := range u.s.log[start:] {
		if want(*env) {
			out = append(out, cloneEnvelope(*env))
			if len(out) == limit {
				break
			}
		}
	}
	for _, envs := range u.pending {
		for _, env := range envs {
			if want(env) {
				out = append(out, cloneEnvelope(env))
			}
		}
	}
	slices.SortFunc(out, func(a, b events.Envelope) int { return a.Token.Compare(b.Token) })
	if len(out) > limit {
		out = out[:limit]
	}
	if out == nil {
		out = []events.Envelope{}
	}
	return out, nil
}

// ReadAll reads committed events only, as a reader outside the unit would.
func (u *unit) ReadAll(ctx context.Context, after events.Token, limit int) ([]events.Envelope, error) {
	if err := u.live(); err != nil {
		return nil, err
	}
	return u.s.ReadAll(ctx, after, limit)
}

// Head returns the newest committed event's token.
func (u *unit) Head(ctx context.Context) (events.Token, error) {
	if err := u.live(); err != nil {
		return events.Token{}, err
	}
	return u.s.Head(ctx)
}

// live fails once the unit has ended: every method checks it first, so an
// ended unit answers ErrUnitEnded whatever it is asked (events.Unit). It
// fails too once the unit has failed (see failed), with why: PostgreSQL
// runs nothing more in an aborted transaction, and a caller that went on
// after the failure must not see later calls succeed and be lost at the
// commit.
func (u *unit) live() error {
	u.s.mu.RLock()
	defer u.s.mu.RUnlock()
	if u.done {
		return events.ErrUnitEnded
	}
	return u.failed
}

// AfterCommit registers fn to run after a successful Commit.
func (u *unit) AfterCommit(fn func()) {
	u.s.mu.Lock()
	defer u.s.mu.Unlock()
	if !u.done {
		u.after = append(u.after, fn)
	}
}

// Rows returns the unit's view of the rows.
func (u *unit) Rows() feed.Rows { return &u.view }

// Writes implements feed.WriteCounter.
func (u *unit) Writes() uint64 { return u.writes.Load() }

// Positions reads checkpoint positions; Commit fails with ErrConflict when
// one of them moved since.
func (u *unit) Positions(ctx context.Context, names ...string) ([]events.Token, error) {
	return u.positions(ctx, names, true)
}

// positions reads checkpoint positions, with track noting them for the
// check at commit.
func (u *unit) positions(ctx context.Context, names []string, track bool) ([]events.Token, error) {
	if err := u.live(); err != nil {
		return nil, err
	}
	if err := u.s.checkInput(ctx, feed.ValidateConsumerNames(names...)); err != nil {
		return nil, err
	}
	u.s.mu.Lock()
	defer u.s.mu.Unlock()
	if u.done {
		return nil, events.ErrUnitEnded
	}
	c := u.s.checkpoints
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]events.Token, len(names))
	for i, name := range names {
		if cp := c.names[name]; cp != nil {
			out[i] = cp.pos
		}
		if _, seen := u.posReads[name]; !seen && track {
			u.posReads[name] = out[i]
		}
	}
	return out, nil
}

// OrderAfter implements feed.MarkScanner. Memory places events in the
// order they are appended, and a unit that took a hook's lock row before
// another committed it conflicts at commit and runs again: nothing to do.
func (u *unit) OrderAfter(context.Context, events.Token) error { return u.live() }

// PositionsNow implements feed.MarkScanner: Positions without the check
// at commit.
func (u *unit) PositionsNow(ctx context.Context, names ...string) ([]events.Token, error) {
	return u.positions(ctx, names, false)
}

// Context returns ctx carrying the unit.
func (u *unit) Context(ctx context.Context) context.Context {
	return events.ContextWithUnit(ctx, u)
}

// Commit checks the leases of moves and what the unit read with locks, then
// makes the unit's events, rows and moves visible at once. On any failure
// the unit is discarded.
func (u *unit) Commit(ctx context.Context, moves ...feed.Move) error {
	// Only an ended unit is refused here: a failed one (see live) must
	// reach the check of u.failed below, which discards it.
	u.s.mu.RLock()
	done := u.done
	u.s.mu.RUnlock()
	if done {
		return events.ErrUnitEnded
	}
	if err := feed.ValidateMoves(moves); err != nil {
		_ = u.Rollback(ctx) // as on PostgreSQL, where the unit cannot go on
		return err
	}
	s := u.s
	s.mu.Lock()
	if u.done {
		s.mu.Unlock()
		return events.ErrUnitEnded
	}
	if err := s.check(ctx); err != nil {
		s.endLocked(u)
		s.mu.Unlock()
		s.wake.Notify()
		return err
	}
	if err := u.failed; err != nil {
		s.endLocked(u)
		s.mu.Unlock()
		s.wake.Notify()
		return err
	}
	c := s.checkpoints
	c.mu.Lock()
	err := u.checkLocked(moves)
	if err != nil {
		c.mu.Unlock()
		s.endLocked(u)
		s.mu.Unlock()
		s.wake.Notify()
		return err
	}
	now := c.clock.Now()
	for _, m := range moves {
		cp := c.names[m.Lease.Name]
		cp.pos = m.Position
		cp.heartbeatAt = now
		cp.updatedAt = now
	}
	c.mu.Unlock()

	streams := slices.Sorted(maps.Keys(u.pending))
	for _, id := range streams {
		s.commitEvents(u.pending[id])
	}
	for addr, w := range u.rowWrites {
		s.rows.write(addr, w)
	}
	for addr, r := range u.rowReads {
		_, wrote := u.rowWrites[addr]
		switch {
		case wrote:
		case r.update:
			// An update lock excludes other locked readers: bumping the
			// version makes their commits conflict, as if this unit wrote.
			s.rows.bump(addr)
		default:
			// A share lock excludes update locks: a unit that took the
			// row with LockUpdate before this commit now conflicts.
			s.rows.bumpShare(addr)
		}
	}
	after := u.after
	s.endLocked(u)
	s.mu.Unlock()

	s.wake.Notify()
	// Hooks before the moves are announced: a reader woken by a move (the
	// tracker's waiters) finds what the hooks did already done.
	for _, fn := range after {
		fn()
	}
	for _, m := range moves {
		c.notify(m.Lease.Name, m.Position)
	}
	return nil
}

// checkLocked reports why the unit cannot commit. The caller holds s.mu and
// the checkpoint store's mu.
func (u *unit) checkLocked(moves []feed.Move) error {
	c := u.s.checkpoints
	for _, m := range moves {
		cp, err := c.current(m.Lease)
		if err != nil {
			return err
		}
		if m.From != nil && cp.pos != *m.From {
			l := m.Lease
			return fmt.Errorf("%w: the checkpoint of %q generation %d of owner %q is at %s, not at %s where the unit began: stop delivering; Acquire again to resume from the stored checkpoint",
				feed.ErrLeaseLost, l.Name, l.Generation, l.Owner, cp.pos, m.From)
		}
	}
	for name, pos := range u.posReads {
		var now events.Token
		if cp := c.names[name]; cp != nil {
			now = cp.pos
		}
		if now != pos {
			return fmt.Errorf("%w: checkpoint %q moved from %s to %s since the unit read it", feed.ErrConflict, name, pos, now)
		}
	}
	for addr, r := range u.rowReads {
		if u.s.rows.version(addr) != r.ver {
			return fmt.Errorf("%w: row %q/%q/%q changed since the unit read it with a lock", feed.ErrConflict, addr.ns, addr.table, addr.key)
		}
		if r.update && u.s.rows.shareVersion(addr) != r.share {
			return fmt.Errorf("%w: row %q/%q/%q was held with LockShare by a unit that committed after this one took it with LockUpdate", feed.ErrConflict, addr.ns, addr.table, addr.key)
		}
	}
	return nil
}

// Rollback discards the unit's appends and writes. Safe after Commit, and
// twice.
func (u *unit) Rollback(context.Context) error {
	u.s.mu.Lock()
	if u.done {
		u.s.mu.Unlock()
		return nil
	}
	u.s.endLocked(u)
	u.s.mu.Unlock()
	u.s.wake.Notify()
	return nil
}

// endLocked ends u: its reservations and streams are released, and readers
// held back by it move on. The caller holds s.mu and wakes readers after.
func (s *Store) endLocked(u *unit) {
	u.done = true
	delete(s.open, u)
	for id := range u.pending {
		if s.owners[id] == u {
			delete(s.owners, id)
		}
	}
	for _, id := range u.ids {
		delete(s.reserved, id)
	}
	u.pending, u.rowWrites, u.rowReads, u.posReads, u.after = nil, nil, nil, nil, nil
	close(u.ended)
}

// Announce does nothing more than Commit does: every commit wakes the
// store's readers, and memory has no other process (feed.Announcer).
func (u *unit) Announce() {}

var _ feed.WriteCounter = (*unit)(nil)

package consistency

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/converge-es/converge/events"
)

// Wait returns as soon as every named checkpoint is at or after target, or
// at the deadline with a stale Status. Staleness is not an error: the caller
// still answers, and flags the answer stale.
//
// The deadline is the earliest of ctx's deadline, DefaultTimeout when ctx
// has none, and MaxTimeout, which caps every wait. A zero target returns at
// once, fresh: there is nothing to wait for. When MaxWaiters waits are
// already blocking, Wait returns at once, stale, with ReasonRejected. A ctx
// already past its deadline (a wait of 0) does not wait, but still starts
// the read of a name the tracker has not learned, so the waits after it
// know where the name stands.
//
// Wait returns an error only for misuse (no names: ErrNoNames; a ctx that
// carries a unit of work: ErrWaitInUnit) or when the caller cancels ctx, and then it returns ctx.Err() at once. A ctx that
// reaches its deadline is not a cancellation: it ends the wait with a stale
// Status.
//
// Names must come from the program, never from request input: the tracker
// keeps an entry for every name it is asked about.
func (t *Tracker) Wait(ctx context.Context, target events.Token, names ...string) (Status, error) {
	start := t.cfg.Clock.Now()
	if _, inUnit := events.UnitFromContext(ctx); inUnit {
		return Status{Target: target, Behind: -1}, ErrWaitInUnit
	}
	if len(names) == 0 {
		return Status{Target: target, Behind: -1}, ErrNoNames
	}
	for i, n := range names {
		if n == "" {
			return Status{Target: target, Behind: -1}, fmt.Errorf("%w: name %d of %d is empty", ErrNoNames, i+1, len(names))
		}
	}
	if cancelled(ctx) {
		return t.status(ctx, target, names, start, ""), ctx.Err()
	}

	// Fast path: nothing to wait for, or already there. It takes no waiter
	// slot, so a flood of reads that are already fresh is never rejected.
	if st, fresh := t.check(target, names); fresh {
		st.Waited = t.cfg.Clock.Now().Sub(start)
		return st, nil
	}
	if t.isStopping() {
		return t.status(ctx, target, names, start, ReasonStopped), nil
	}
	if t.waiters.Add(1) > int64(t.cfg.MaxWaiters) {
		t.waiters.Add(-1)
		t.rejected.Add(1)
		t.logger.DebugContext(ctx, "wait rejected: too many waiters (raise TrackerConfig.MaxWaiters or look for a stuck projection)",
			"max_waiters", t.cfg.MaxWaiters, "names", names)
		st := t.snapshot(target, names)
		if st.Stale { // an Advance may have landed since the fast path
			st.Reason = ReasonRejected
			t.noteEndedStale(st.Lagging)
		}
		st.Waited = t.cfg.Clock.Now().Sub(start)
		return st, nil
	}
	t.changed.Notify()
	defer func() {
		t.waiters.Add(-1)
		t.changed.Notify()
	}()

	// The deadline: ctx's own when it has one (WithTimeout keeps the
	// earlier), DefaultTimeout otherwise, never more than MaxTimeout.
	timeout := t.cfg.DefaultTimeout
	if _, ok := ctx.Deadline(); ok {
		timeout = t.cfg.MaxTimeout
	}
	waitCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	t.setActive(names, 1)
	defer t.setActive(names, -1)
	t.readIfNeeded(waitCtx, target, names)

	var reason Reason
	for {
		name, moved := t.firstLagging(target, names)
		if name == "" {
			break
		}
		t.park(name, 1)
		select {
		case <-moved:
		case <-waitCtx.Done():
			reason = ReasonDeadline
		case <-t.stopping:
			reason = ReasonStopped
		}
		t.park(name, -1)
		if reason != "" {
			break
		}
	}
	if cancelled(ctx) {
		return t.status(ctx, target, names, start, ""), ctx.Err()
	}
	return t.status(ctx, target, names, start, reason), nil
}

// noteEndedStale records names a wait ended stale on, for the fallback
// loop's next tick to read.
func (t *Tracker) noteEndedStale(names []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.endedStale == nil {
		t.endedStale = make(map[string]bool, len(names))
	}
	for _, name := range names {
		t.endedStale[name] = true
	}
}

// takeEndedStale returns the names waits ended stale on since the last
// call, and forgets them.
func (t *Tracker) takeEndedStale() map[string]bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := t.endedStale
	t.endedStale = nil
	return out
}

// cancelled reports whether the caller cancelled ctx, as opposed to ctx
// reaching its deadline, which only makes the answer stale.
func cancelled(ctx context.Context) bool {
	return errors.Is(ctx.Err(), context.Canceled)
}

// check reports whether target is zero or every name is known to be at or
// after it, and the Status to return if so.
func (t *Tracker) check(target events.Token, names []string) (Status, bool) {
	st := t.snapshot(target, names)
	return st, !st.Stale
}

// snapshot describes names against target as the tracker knows them now,
// without waiting or reading.
func (t *Tracker) snapshot(target events.Token, names []string) Status {
	st := Status{Target: target}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i, name := range names {
		var pos events.Token
		if cp, ok := t.names[name]; ok && cp.known {
			pos = cp.pos
		}
		if i == 0 || pos.Before(st.Checkpoint) {
			st.Checkpoint = pos
		}
		if pos.Before(target) {
			st.Lagging = append(st.Lagging, name)
		}
	}
	if len(st.Lagging) > 0 {
		st.Stale = true
		st.Behind = -1
	}
	return st
}

// status builds the final Status of a wait, counting the events a stale one
// is behind when a Counter is configured.
func (t *Tracker) status(ctx context.Context, target events.Token, names []string, start time.Time, reason Reason) Status {
	st := t.snapshot(target, names)
	if st.Stale {
		if !cancelled(ctx) {
			// A caller that left asks for nothing more.
			t.noteEndedStale(st.Lagging)
		}
		st.Reason = reason
		if st.Reason == "" {
			st.Reason = ReasonDeadline
		}
		st.Behind = t.countBehind(ctx, st, names)
		if st.Behind == 0 && st.Reason == ReasonDeadline {
			// Stale with nothing to wait for: every stored event is
			// reflected, and the target is past them all.
			st.Reason = ReasonAhead
		}
	}
	st.Waited = t.cfg.Clock.Now().Sub(start)
	return st
}

// countBehind returns how many events lie between a stale Status's
// checkpoint and its target, or -1.
func (t *Tracker) countBehind(ctx context.Context, st Status, names []string) int64 {
	if t.cfg.Counter == nil || cancelled(ctx) {
		return -1
	}
	for _, name := range names {
		if _, known := t.Position(name); !known {
			// Counting from zero would count the whole store to report a
			// number that means nothing.
			return -1
		}
	}
	// The wait's deadline has passed, so the count gets its own short one.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.cfg.CountTimeout)
	defer cancel()
	n, err := t.cfg.Counter.CountBetween(cctx, st.Checkpoint, storable(st.Target))
	if err != nil {
		t.logger.DebugContext(ctx, "cannot count events behind a stale read", "error", err)
		return -1
	}
	return n
}

// storable is the last position a store can hold that is not after
// target. A token parses from any 128 bits, but stores keep each half in
// a signed 64-bit integer and refuse to count up to a half beyond it: a
// forged token past that range counts to the store's last possible
// position instead, which leaves out no event before target, so it is
// reported ahead (nothing left to wait for), not as a failed count.
func storable(target events.Token) events.Token {
	switch {
	case target.Major() > math.MaxInt64:
		return events.MakeToken(math.MaxInt64, math.MaxInt64)
	case target.Minor() > math.MaxInt64:
		return events.MakeToken(target.Major(), math.MaxInt64)
	}
	return target
}

// firstLagging returns the first name before target and the channel its
// next move closes, or "" when none lags. The channel is taken under the
// same lock as the position is read, so a move in between is not missed.
// Waiting on one lagging name at a time is enough: the wait cannot end
// before that name catches up, and then the loop looks again.
func (t *Tracker) firstLagging(target events.Token, names []string) (string, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, name := range names {
		cp := t.checkpointLocked(name)
		if cp.pos.Before(target) {
			return name, cp.moved.C()
		}
	}
	return "", nil
}

func (t *Tracker) park(name string, delta int) {
	t.mu.Lock()
	t.checkpointLocked(name).parked += delta
	t.mu.Unlock()
	t.changed.Notify()
}

func (t *Tracker) setActive(names []string, delta int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, name := range names {
		t.checkpointLocked(name).active += delta
	}
}

// readIfNeeded reads the durable positions a wait cannot trust: names never
// learned, and lagging names while push is not trusted (the in-memory view
// may simply be old, and reading once now beats waiting a fallback tick).
// The reads run together, and the wait waits for them until ctx ends or the
// tracker stops. A ctx already past its deadline (a wait of 0) still starts
// them: it labels with what it knows now, and the waits after it find the
// name learned instead of unknown for ever.
func (t *Tracker) readIfNeeded(ctx context.Context, target events.Token, names []string) {
	if t.cfg.Positions == nil || cancelled(ctx) {
		return
	}
	trusted := t.pushTrusted()
	var calls []*readCall
	t.mu.Lock()
	for _, name := range names {
		cp := t.checkpointLocked(name)
		if !cp.known || (!trusted && cp.pos.Before(target)) {
			calls = t.startReadLocked(ctx, name, calls, 0)
		}
	}
	t.mu.Unlock()
	for _, call := range calls {
		_ = awaitRead(ctx, t.stopping, call) // a failure is logged; the wait relies on push
	}
}

// maxRereads bounds how often a read reads again because of reports that
// came while it ran (see startReadLocked).
const maxRereads = 3

// readStart is what a checkpoint had seen when a read of it started.
type readStart struct{ moves, resets, reported, held uint64 }

func (cp *checkpoint) readStart() readStart {
	return readStart{moves: cp.moves, resets: cp.resets, reported: cp.reported, held: cp.held}
}

// learnLocked takes pos, the stored position of name read from start. A
// Reset since makes the read old news: it is dropped, so a rewind is never
// undone by a read that started before it. So is a read the Watcher
// reported a possible rewind during (see watched), when it could not read
// again. A stored position behind the known one, with nothing moved
// meanwhile, is a reset made elsewhere (another process's Reset, or a
// rebuild's): the store is believed. Otherwise the read is an Advance.
func (t *Tracker) learnLocked(name string, cp *checkpoint, pos events.Token, start readStart) {
	switch {
	case cp.resets != start.resets:
		if cp.held != start.held {
			// A report held back during the read (see watched) is
			// settled by a read made after the Reset, not this one.
			t.verifyLocked(name)
		}
	case cp.known && pos.Before(cp.pos) && cp.moves == start.moves:
		// Behind, with nothing moved meanwhile: a reset made elsewhere,
		// whatever was reported during the read.
		t.resetLocked(cp, pos)
		t.settleHeldLocked(name, cp, pos, start)
	case cp.reported != start.reported:
		// Taken as an Advance, a snapshot from before a reported reset
		// would undo it: dropped, and the name checked again.
		if t.cfg.Positions != nil {
			t.verifyLocked(name)
		}
	default:
		t.advanceLocked(cp, pos)
		t.settleHeldLocked(name, cp, pos, start)
	}
	t.regroupLocked(name, 0)
}

// settleHeldLocked weighs the reports held back since a local Reset of
// name (see watched) against pos, the store's position read from start,
// after the Reset. At or after every one of them, they are confirmed: the
// tracker is there now, and trusts the Watcher's reports again. Behind
// them, with none held while the read ran, they are old news (a move is
// reported after it is stored, and the store was behind it after the
// report came): dropped, and the next forward report is held in its turn.
// Behind a report held while the read ran, which the read may predate,
// the name is read again.
func (t *Tracker) settleHeldLocked(name string, cp *checkpoint, pos events.Token, start readStart) {
	switch {
	case !cp.guarded || cp.heldTo.IsZero():
	case !pos.Before(cp.heldTo):
		cp.guarded = false
		cp.heldTo = events.Token{}
	case cp.held != start.held:
		t.verifyLocked(name)
	default:
		cp.heldTo = events.Token{}
	}
}

// readCall is one read of a name's durable position, shared by every
// caller that asks for the name while it is in flight.
type readCall struct {
	done chan struct{}
	err  error // set before done is closed
}

// read reads the durable position of name into the tracker, sharing the
// read in flight, and waits for it until ctx ends.
func (t *Tracker) read(ctx context.Context, name string) error {
	if cancelled(ctx) {
		return ctx.Err()
	}
	t.mu.Lock()
	calls := t.startReadLocked(ctx, name, nil, 0)
	t.mu.Unlock()
	for _, call := range calls {
		if err := awaitRead(ctx, nil, call); err != nil {
			return err
		}
	}
	return nil
}

// startReadLocked appends to calls the read of name in flight, starting it
// when there is none; a group's are its members'. The read runs on a
// context of its own, bounded by QueryTimeout and ended by Stop, not on
// ctx (whose values it keeps): it is shared, and one caller's short
// deadline or departure must not fail it for the others, who would then
// wait out their deadlines on a name still unknown. One read per name at a
// time bounds the goroutines by the names, not by the requests. depth is
// how many groups deep name is, so groups made members of each other in a
// circle end the descent instead of the stack.
//
// A read during which the Watcher reported a possible rewind, and whose
// answer would be taken as an Advance, reads again before it answers (at
// most maxRereads times, each within QueryTimeout): its snapshot may
// predate a reset made elsewhere, and taken as an Advance it would undo
// it. An answer behind the known position, with nothing moved meanwhile,
// proves the reset and is believed at once, however many reports a
// replaying model sends. Past maxRereads the answer is dropped and the
// name checked again.
func (t *Tracker) startReadLocked(ctx context.Context, name string, calls []*readCall, depth int) []*readCall {
	if members, isGroup := t.groups[name]; isGroup {
		if depth > len(t.groups) {
			return calls
		}
		// A group is as far as its slowest member: read each.
		for _, m := range members {
			calls = t.startReadLocked(ctx, m, calls, depth+1)
		}
		return calls
	}
	cp := t.checkpointLocked(name)
	if cp.reading != nil {
		if t.joinHook != nil {
			t.joinHook(name)
		}
		return append(calls, cp.reading)
	}
	call := &readCall{done: make(chan struct{})}
	cp.reading = call
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := func() bool { return false }
	if !t.isStopping() {
		// After Stop a read (Learn's) still runs, within QueryTimeout.
		stop = context.AfterFunc(t.life, cancel)
	}
	t.reads++
	go func(start readStart) {
		defer t.readDone()
		defer cancel()
		defer stop()
		rereads := 0
		for {
			rctx, cancelRead := context.WithTimeout(lctx, t.cfg.QueryTimeout)
			pos, err := t.cfg.Positions.Position(rctx, name)
			cancelRead()
			t.mu.Lock()
			// An answer that a report during the read may have made old news
			// is read again, when it would be taken as an Advance (one
			// behind with nothing moved proves a reset, and is believed),
			// at most maxRereads times: a model replaying after a reset
			// elsewhere reports faster than a read takes. Past that, or
			// once stopping, the answer is dropped and the name checked
			// again (see learnLocked).
			if err == nil && cp.reported != start.reported && !t.isStopping() && rereads < maxRereads &&
				(!cp.known || !pos.Before(cp.pos) || cp.moves != start.moves) {
				rereads++
				start = cp.readStart()
				t.mu.Unlock()
				continue
			}
			cp.reading = nil
			if err == nil {
				t.learnLocked(name, cp, pos, start)
			}
			call.err = err
			close(call.done)
			t.mu.Unlock()
			if err != nil && t.life.Err() == nil {
				t.logger.WarnContext(lctx, "cannot read checkpoint; waits on it rely on push until it moves (if it timed out, raise TrackerConfig.QueryTimeout or look at the store's load)",
					"name", name, "error", err, "query_timeout", t.cfg.QueryTimeout)
			}
			return
		}
	}(cp.readStart())
	return append(calls, call)
}

// readDone counts a read of Positions out, waking Stop after the last.
func (t *Tracker) readDone() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reads--
	if t.reads == 0 && t.readsIdle != nil {
		close(t.readsIdle)
		t.readsIdle = nil
	}
}

// awaitRead waits for call until ctx ends or stop is closed, and returns
// its error. A read that has answered by then counts, so a wait of 0 still
// takes it.
func awaitRead(ctx context.Context, stop <-chan struct{}, call *readCall) error {
	select {
	case <-call.done:
		return call.err
	default:
	}
	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
	case <-stop:
	}
	select {
	case <-call.done:
		return call.err
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return ErrStopped
}

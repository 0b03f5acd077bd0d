package consistency

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/internal/signal"
)

// Tracker is the in-process view of every projection's checkpoint. Waiters
// block on a per-name broadcast that Advance closes, so a checkpoint move
// wakes exactly the waiters of that name and nobody polls per request. See
// the package doc for the whole picture.
type Tracker struct {
	cfg    TrackerConfig
	logger *slog.Logger

	mu    sync.Mutex
	names map[string]*checkpoint
	// groups maps a group name to its members, and memberOf a member to the
	// groups it belongs to (see Group).
	groups    map[string][]string
	memberOf  map[string][]string
	started   bool
	watching  bool // Watcher subscribed and not cancelled
	stopWatch func()
	stopLoop  context.CancelFunc

	waiters  atomic.Int64 // active blocking waits, bounded by MaxWaiters
	rejected atomic.Uint64
	changed  signal.Broadcast // notified whenever a waiter parks or leaves

	// verify holds the names a watcher reported at a lower position than
	// the tracker knows, or forward after a local Reset (see watched),
	// and groups made unknown under waits
	// (see readForWaitersLocked), for the fallback loop to read;
	// verifyKick wakes the loop. Guarded by mu.
	verify     map[string]bool
	verifyKick chan struct{}
	// endedStale holds the names waits ended stale on (a deadline, or a
	// wait refused at MaxWaiters) since the fallback loop's last tick,
	// which reads them then even while push is trusted (see fallbackLoop).
	// Guarded by mu.
	endedStale map[string]bool

	stopping chan struct{} // closed by Stop: releases every waiter
	// life is cancelled by Stop, ending the durable reads in flight (see
	// startReadLocked), which belong to no one caller.
	life     context.Context
	endLife  context.CancelFunc
	loopDone chan struct{} // closed when the fallback loop has returned
	// reads counts the reads of Positions in flight; readsIdle, when set,
	// is closed when it drops to zero (Stop waits for it). Guarded by mu.
	reads     int
	readsIdle chan struct{}
	stopped   chan struct{} // closed when Stop is complete
	stopOnce  sync.Once
	doneOnce  sync.Once

	// joinHook, when set (by tests), is called under mu each time a caller
	// shares a read already in flight. Guarded by mu.
	joinHook func(name string)
	// fallbackTicks, when set (by tests) before Start, replaces the
	// fallback loop's ticker, and passHook, when set with it, is called
	// after each tick's reads, so tests count reads per tick without
	// racing a clock.
	fallbackTicks <-chan time.Time
	passHook      func()
}

// checkpoint is the tracker's knowledge of one name. Fields are guarded by
// Tracker.mu.
type checkpoint struct {
	pos   events.Token
	known bool // pos came from Advance, Reset or Positions, not the zero default
	// active counts waits that include this name: while push is trusted
	// the fallback loop reads only names with active waits.
	active int
	// parked counts waits blocked on moved right now (Waiting).
	parked int
	moved  signal.Broadcast
	// reading is non-nil while a Positions read of this name is in flight,
	// so concurrent first waits share one read instead of stampeding the
	// database.
	reading *readCall
	// moves and resets count the changes of pos by Advance and by Reset,
	// so a read can tell whether its result is still the newest news.
	// reported counts the Watcher's reports that did not move pos forward:
	// each may be news of a reset made elsewhere after a read in flight
	// took its snapshot, which that read's answer must then not undo.
	moves, resets, reported uint64
	// guarded is set by a local Reset: a forward report of name is held
	// back (not taken as an Advance) and the store read instead, until a
	// read answers at or after the reports held (see watched). heldTo is
	// the highest report held and not yet settled by a read (zero: none),
	// and held counts the reports held, so a read can tell whether one
	// came while it ran.
	guarded bool
	heldTo  events.Token
	held    uint64
	// behind counts the Watcher's reports of a position behind the known
	// one, of name or (for a group) of a member: each may be a reset made
	// elsewhere whose check is still under way, and Epoch counts them.
	behind uint64
}

// NewTracker builds a Tracker. Call Start to subscribe to the Watcher and
// run the fallback loop; waits work before Start, but only Advance and
// first reads move checkpoints then.
func NewTracker(cfg *TrackerConfig) (*Tracker, error) {
	var c TrackerConfig
	if cfg != nil {
		c = *cfg
	}
	c = c.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	life, endLife := context.WithCancel(context.Background())
	return &Tracker{
		life:       life,
		endLife:    endLife,
		cfg:        c,
		logger:     c.Logger.With("component", "consistency.Tracker"),
		names:      make(map[string]*checkpoint),
		groups:     make(map[string][]string),
		memberOf:   make(map[string][]string),
		verify:     make(map[string]bool),
		verifyKick: make(chan struct{}, 1),
		stopping:   make(chan struct{}),
		loopDone:   make(chan struct{}),
		stopped:    make(chan struct{}),
	}, nil
}

// Start subscribes to the Watcher and starts the fallback loop. It does not
// block. ctx supplies values only: the tracker runs until Stop, so that a
// request-scoped context cannot end it by accident.
func (t *Tracker) Start(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	// Checked under the lock Stop closes stopping with, so a Start racing a
	// Stop cannot leave a loop running.
	if t.isStopping() {
		return ErrStopped
	}
	if t.started {
		return ErrAlreadyStarted
	}
	t.started = true
	if t.cfg.Watcher != nil {
		t.stopWatch = t.cfg.Watcher.WatchCheckpoints(t.watched)
		t.watching = true
	}
	if t.cfg.Positions == nil {
		// Nothing to poll: no goroutine at all.
		close(t.loopDone)
		return nil
	}
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t.stopLoop = cancel
	go t.fallbackLoop(loopCtx)
	return nil
}

// Stop unsubscribes from the Watcher, ends the fallback loop and the reads
// of Positions in flight, and releases every blocked waiter with a stale
// Status (ReasonStopped), so a shutting down server answers its last reads
// at once instead of after their deadlines. It returns when the loop and
// the reads it ended have returned, or ctx is done. Stop may be called
// more than once, and without Start.
func (t *Tracker) Stop(ctx context.Context) error {
	t.stopOnce.Do(func() {
		t.mu.Lock()
		close(t.stopping)
		t.endLife()
		if t.stopWatch != nil {
			t.stopWatch()
		}
		t.watching = false
		switch {
		case t.stopLoop != nil:
			t.stopLoop()
		case !t.started:
			close(t.loopDone)
		}
		t.mu.Unlock()
	})
	if err := signal.Await(ctx, t.loopDone); err != nil {
		return err
	}
	// Stop ended the reads in flight; a caller that stops the store next
	// must not have one still running on it.
	if idle := t.readsIdleChan(); idle != nil {
		if err := signal.Await(ctx, idle); err != nil {
			return err
		}
	}
	t.doneOnce.Do(func() { close(t.stopped) })
	return nil
}

// readsIdleChan returns a channel closed when no read of Positions is in
// flight, or nil when none is.
func (t *Tracker) readsIdleChan() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.reads == 0 {
		return nil
	}
	if t.readsIdle == nil {
		t.readsIdle = make(chan struct{})
	}
	return t.readsIdle
}

// Stopped returns a channel closed once Stop has completed.
func (t *Tracker) Stopped() <-chan struct{} { return t.stopped }

// Advance moves the checkpoint of name forward to pos and wakes its
// waiters. A pos at or before the known checkpoint is ignored: moves arrive
// from several sources (the Watcher, the fallback loop, first reads) in no
// particular order, and a late report must not make a read model look
// older than it is. Use Reset when a projection really rewinds.
//
// Advance does not block, so it is safe as a feed.CheckpointWatcher
// callback.
func (t *Tracker) Advance(name string, pos events.Token) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.advanceLocked(t.checkpointLocked(name), pos)
	t.regroupLocked(name, 0)
}

// Epoch returns a count that moves whenever name's position moves back or
// is forgotten (a Reset here, a reset learned from the store, a change of
// a group's members or a group moving back with them), or may be about to:
// the Watcher reported a position behind the known one, of name or of a
// member of its group, and the store read that tells a reset made
// elsewhere from a late report is under way. Pass it to AdvanceAt.
func (t *Tracker) Epoch(name string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	cp := t.checkpointLocked(name)
	return cp.resets + cp.behind
}

// markBehindLocked counts a report behind cp's position, of name, in
// name's epoch and in those of the groups it belongs to, and of theirs.
func (t *Tracker) markBehindLocked(cp *checkpoint, name string, depth int) {
	cp.behind++
	if depth > len(t.groups) {
		return
	}
	for _, g := range t.memberOf[name] {
		t.markBehindLocked(t.checkpointLocked(g), g, depth+1)
	}
}

// AdvanceAt is Advance for a caller that learned of pos before it could
// tell the tracker: a projection's generation switch, which commits, then
// tells its listeners, then advances. It advances only if name has not
// moved back since epoch was read (Epoch): a reset in between, made here
// or learned from another process, is newer news than pos, which would
// undo it and answer waits fresh for events being applied again. It
// reports whether it advanced.
func (t *Tracker) AdvanceAt(name string, pos events.Token, epoch uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	cp := t.checkpointLocked(name)
	if cp.resets+cp.behind != epoch {
		return false
	}
	t.advanceLocked(cp, pos)
	t.regroupLocked(name, 0)
	return true
}

// Group makes name stand for the lowest position of members: a processor
// split into partitions (feed.Processor.CheckpointNames) has one checkpoint
// per partition, and a read model fed by it has caught up to a token only
// when every partition has. Waits on name then wait for all of them. The
// group's position is known once every member's is, and moves, forward or
// back (a member's Reset), with the lowest of them. A member may be a group
// itself. The Watcher's reports for name itself are ignored (see watched);
// Advance and Reset of name still move it, for a caller that knows the
// read model reflects more than its members say (a generation switch).
//
// Group replaces the members name had. Until every new member is known,
// name is unknown, whatever position it had before (its own, or the old
// members'): the next wait on it reads the members instead of answering
// from a position that is not theirs. New members all known and lower than
// that position move name back, as a Reset does. Group(name, name) makes
// name stand for itself again, unknown until learned.
//
// The projections runner (and so the client object) groups the read models
// it runs, in every process that runs them, standing by or not. A process
// that waits on a partitioned read model without running its projection
// (an API that only reads) must group it itself, with the partition names
// (feed.PartitionName, with the count feed.ProcessorPartitions reads from
// the store): otherwise its waits follow the processor's own name, which
// a split processor no longer moves (stale for ever, or, after a reset of
// the partitions, fresh while they rebuild).
func (t *Tracker) Group(name string, members ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old, wasGroup := t.groups[name]
	for _, m := range old {
		t.memberOf[m] = slices.DeleteFunc(t.memberOf[m], func(g string) bool { return g == name })
	}
	if len(members) == 1 && members[0] == name {
		delete(t.groups, name)
		if wasGroup {
			// The position held was the members', not name's own, which
			// the tracker has yet to learn: the next wait reads it.
			t.forgetLocked(name, 0)
		}
		return
	}
	// A read of name in flight since before reads name's own checkpoint,
	// not the members': counted as a reset, its answer is dropped.
	t.checkpointLocked(name).resets++
	t.groups[name] = slices.Clone(members)
	for _, m := range members {
		t.memberOf[m] = append(t.memberOf[m], name)
	}
	t.recomputeLocked(name, 0)
	if !t.names[name].known {
		t.readForWaitersLocked(name)
	}
}

// regroupLocked moves the groups member belongs to, and the groups those
// belong to in turn. depth is how many groups up from the member that
// moved the walk is: groups made members of each other in a circle end
// it instead of the stack (see startReadLocked).
func (t *Tracker) regroupLocked(member string, depth int) {
	if depth > len(t.groups) {
		return
	}
	for _, g := range t.memberOf[member] {
		t.recomputeLocked(g, depth)
	}
}

// recomputeLocked sets group g to its members' lowest position when all of
// them are known, and makes it unknown otherwise: a position it held before
// its members changed (Group) or one of them was forgotten is not theirs,
// and would answer waits fresh without reading them. A lower position is a
// reset (members only move back when reset, or replaced), so reads and
// waiters treat it as one. Any change moves the groups g belongs to.
func (t *Tracker) recomputeLocked(g string, depth int) {
	var low events.Token
	for i, m := range t.groups[g] {
		cp, ok := t.names[m]
		if !ok || !cp.known {
			t.forgetLocked(g, depth)
			return
		}
		if i == 0 || cp.pos.Before(low) {
			low = cp.pos
		}
	}
	gcp := t.checkpointLocked(g)
	switch {
	case gcp.known && low.Before(gcp.pos):
		t.resetLocked(gcp, low)
	case gcp.known && !low.After(gcp.pos):
		return // unchanged: nothing above it moves either
	default:
		t.advanceLocked(gcp, low)
	}
	t.regroupLocked(g, depth+1)
}

// forgetLocked makes name unknown, as if never learned, and tells the
// groups it belongs to. Counted as a reset, so a read of name in flight
// cannot make it known again with what the position meant before, and its
// waiters look again.
func (t *Tracker) forgetLocked(name string, depth int) {
	cp := t.checkpointLocked(name)
	if !cp.known {
		return
	}
	cp.pos = events.Token{}
	cp.known = false
	cp.resets++
	cp.moved.Notify()
	t.readForWaitersLocked(name)
	t.regroupLocked(name, depth+1)
}

// readForWaitersLocked queues name, just made unknown, for the fallback
// loop to read when waits are on it: they read what they could not trust
// when they started, not since, and would otherwise wait for a push that
// an idle member never sends.
func (t *Tracker) readForWaitersLocked(name string) {
	if t.cfg.Positions != nil && t.checkpointLocked(name).active > 0 {
		t.verifyLocked(name)
	}
}

// WaitReached is Wait for the runtime's gates (feed.Waiter): it reports
// whether every model reached token before ctx's deadline, and which had
// not. A ctx already past its deadline checks without waiting. Every model
// has reached the zero token, the position before the first event, known
// to the tracker or not, as Wait says.
func (t *Tracker) WaitReached(ctx context.Context, token events.Token, models ...string) (bool, []string, error) {
	if ctx.Err() == nil {
		if _, err := t.Wait(ctx, token, models...); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return false, nil, err
		}
	} else if len(models) == 0 {
		return false, nil, ErrNoNames
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	var behind []string
	for _, m := range models {
		if cp := t.checkpointLocked(m); (!cp.known && !token.IsZero()) || cp.pos.Before(token) {
			behind = append(behind, m)
		}
	}
	return len(behind) == 0, behind, nil
}

// Learn reads the stored position (TrackerConfig.Positions) of each name
// the tracker has not learned yet, as a wait does before it waits, and
// waits for nothing to move. A name it knows is not read again. Without
// Positions it does nothing. A caller deciding from Position that a model
// is behind, right after a start, calls it first: until something waits
// on a model or advances it, the tracker does not know where it stands.
// It returns the first failed read's error, and reads the other names
// all the same: a name it could not read is still unknown, so "behind"
// would be a guess. Each read gets QueryTimeout; when ctx ends first, Learn
// returns ctx.Err() and the read goes on for the waits that share it.
func (t *Tracker) Learn(ctx context.Context, names ...string) error {
	if t.cfg.Positions == nil {
		return nil
	}
	var first error
	for _, name := range names {
		t.mu.Lock()
		known := t.checkpointLocked(name).known
		t.mu.Unlock()
		if !known {
			if err := t.read(ctx, name); err != nil && first == nil {
				first = fmt.Errorf("consistency: read the position of %q: %w", name, err)
			}
		}
	}
	return first
}

// Reset sets the checkpoint of name to pos even when that moves it back,
// as when a projection is rebuilt from scratch. Without it the tracker would
// keep reporting the old position and label reads of the rebuilding read
// model fresh. A read of the stored position that started before the Reset
// is dropped when it answers, so it cannot undo the rewind. Nor can a
// Watcher report of a move made before it but delivered after (a
// notification in flight, the store's re-announce of every position after
// a reconnect, read before the reset committed): with Positions, a forward
// report of name is not taken until a read of the store answers at or
// after it; a read made after it came that answers behind it proves it
// old news.
//
// Only the process that rewinds calls Reset. Other processes' trackers learn
// of it through their Watcher: a reported position behind the known one is
// read from the store (Positions) and believed when the store is behind
// too and nothing moved the name during the read; a read in flight when the
// report came reads again before it answers. Without Positions such a
// report is ignored, as a late one would be. A rewind announced while push
// was down is found by the fallback loop, which reads every known name
// while push is untrusted and once more when it is back.
func (t *Tracker) Reset(name string, pos events.Token) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cp := t.checkpointLocked(name)
	t.resetLocked(cp, pos)
	cp.guarded = true
	cp.heldTo = events.Token{}
	t.regroupLocked(name, 0)
}

func (t *Tracker) resetLocked(cp *checkpoint, pos events.Token) {
	cp.pos = pos
	cp.known = true
	cp.resets++
	cp.moved.Notify()
}

// verifyLocked queues name for the fallback loop to read from the store.
// The caller holds t.mu.
func (t *Tracker) verifyLocked(name string) {
	t.verify[name] = true
	select {
	case t.verifyKick <- struct{}{}:
	default:
	}
}

// watched takes a checkpoint move the Watcher reports. A move forward is an
// Advance. A move to before the known position is either news of a reset
// (in this process or another: only the process that resets calls Reset)
// or a late report of an old move; the stored position tells them apart,
// so the name is queued for the fallback loop to read (read then believes
// the store when nothing moved the name while it read).
//
// A report that does not move a known position forward, or that is the
// first news of a name, is counted, so that a read in flight reads again
// rather than answer with a snapshot it may have taken before a reset:
// that answer would look like an Advance and undo the reset, and the
// verification, which shares the read in flight, would never see the
// store behind.
//
// After a local Reset of the name, a move forward is held back and the
// name queued for a read instead, until a read confirms such a report (see
// settleHeldLocked): a report of a move made before the reset, delivered
// after it, would otherwise undo it, and only the store tells it from the
// rebuild's first moves.
//
// A report for a group's name is ignored: a group stands for its members,
// and a checkpoint stored under its name is not theirs (the processor's
// own, from before it was split, which the store keeps and announces again
// after a reconnect). Taken, it could move the group past a member that
// is behind, or make it known before its members are, and label reads of
// the partitioned model fresh.
func (t *Tracker) watched(name string, pos events.Token) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, isGroup := t.groups[name]; isGroup {
		return
	}
	cp := t.checkpointLocked(name)
	if !cp.known || !pos.After(cp.pos) {
		cp.reported++
	}
	if cp.known && pos.Before(cp.pos) && t.cfg.Positions != nil {
		t.markBehindLocked(cp, name, 0)
		t.verifyLocked(name)
		return
	}
	if cp.guarded && t.cfg.Positions != nil && (!cp.known || pos.After(cp.pos)) {
		cp.held++
		cp.heldTo = pos.Max(cp.heldTo)
		t.verifyLocked(name)
		return
	}
	t.advanceLocked(cp, pos)
	t.regroupLocked(name, 0)
}

// Position returns the checkpoint the tracker knows for name, and false
// when it has learned none yet (it was never advanced nor waited on), or
// none since its members changed (see Group).
func (t *Tracker) Position(name string) (events.Token, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cp, ok := t.names[name]
	if !ok || !cp.known {
		return events.Token{}, false
	}
	return cp.pos, true
}

// Waiting returns how many waits are blocked on name right now. A wait on
// several names blocks on one lagging name at a time. With WaitersChanged
// it lets tests know waiters are parked without sleeping.
func (t *Tracker) Waiting(name string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cp, ok := t.names[name]; ok {
		return cp.parked
	}
	return 0
}

// WaitersChanged returns a channel closed the next time a wait starts
// blocking, parks on a name, or leaves. Take it before reading Waiting or
// Stats, then wait on it, so a change in between is not missed.
func (t *Tracker) WaitersChanged() <-chan struct{} { return t.changed.C() }

// Stats returns the tracker's counters.
func (t *Tracker) Stats() TrackerStats {
	return TrackerStats{
		Waiters:  int(t.waiters.Load()),
		Rejected: t.rejected.Load(),
	}
}

func (t *Tracker) checkpointLocked(name string) *checkpoint {
	cp, ok := t.names[name]
	if !ok {
		cp = &checkpoint{}
		t.names[name] = cp
	}
	return cp
}

func (t *Tracker) advanceLocked(cp *checkpoint, pos events.Token) {
	if cp.known && !pos.After(cp.pos) {
		return
	}
	cp.pos = pos.Max(cp.pos)
	cp.known = true
	cp.moves++
	cp.moved.Notify()
}

// pushTrusted reports whether checkpoint moves reach the tracker by push,
// so a known position can be believed without reading it again.
func (t *Tracker) pushTrusted() bool {
	t.mu.Lock()
	watching := t.watching
	t.mu.Unlock()
	return watching && (t.cfg.PushHealthy == nil || t.cfg.PushHealthy())
}

func (t *Tracker) isStopping() bool {
	select {
	case <-t.stopping:
		return true
	default:
		return false
	}
}

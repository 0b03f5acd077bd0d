package projections

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// Rebuild rebuilds a projection from the start of the feed without
// downtime for readers: a second processor (name + "@rebuild-<generation>")
// writes the next generation beside the active one while readers keep
// reading the active generation and the live processor keeps it current.
// Once the rebuild's position has caught up with the live processor's, one
// unit makes the new generation active, records the rebuild's position as
// the point up to which the live processor only moves on (it already is in
// the new rows), and clears the live processor's halts. The rebuild's
// processor then stops, its checkpoints are deleted, and the old
// generation's rows are dropped in short batches.
//
// Rebuild fails with ErrNotRunning before Start, and with an error
// wrapping ErrStopped once Stop has been called, starting nothing.
//
// Rebuild returns once the old generation is dropped. If ctx ends first,
// Rebuild returns ctx's error and the rebuild carries on; a runner started
// later, here or in another process, resumes it. If the runner is stopped
// first, Rebuild returns an error wrapping ErrStopped, and likewise the
// rebuild stays recorded for a runner started later. A rebuild halts on an
// event its handler keeps failing on, under either failure policy (one
// that dead-lettered it would switch in without it), and is reported as a
// *HaltedError: fix the cause and Resume, and the rebuild
// carries on (AwaitRebuild waits for it). The live generation is
// unaffected by a failing rebuild. While a rebuild of the projection is in
// progress, Rebuild fails with ErrRebuildInProgress.
//
// Use it after changing what a handler writes, or to recover from a bug
// that wrote bad rows, dead-lettered events or halted the projection: the
// switch moves the live processor past the event it halted at. Raw tables
// a handler writes through Tx.Pgx are not rebuilt beside unless keyed by
// Tx.Generation.
func (r *Runner) Rebuild(ctx context.Context, name string) error {
	p, err := r.compiled(name)
	if err != nil {
		return err
	}
	r.mu.Lock()
	state := r.state
	r.mu.Unlock()
	switch state {
	case stateNew:
		return ErrNotRunning
	case stateStopping:
		return fmt.Errorf("%w: rebuild of %q refused", ErrStopped, name)
	}
	var gen int
	err = withUnit(ctx, r.cfg.Source.Checkpoints(), func(ctx context.Context, u feed.Unit) error {
		gen, err = beginRebuild(ctx, u.Rows(), p)
		return err
	})
	if err != nil {
		return err
	}
	r.log.Info("projections: rebuild started", "projection", name, "generation", gen)
	standby := r.standingBy(p)
	if standby {
		r.log.Info("projections: the live processor's partitions do not go to this process (it stands by for processes of another build, or its first membership heartbeat has not answered yet): the processes they go to run the rebuild and switch it in", "projection", name, "generation", gen)
	}
	r.mu.Lock()
	switch {
	case r.state != stateRunning:
		err = ErrStopped
	case !standby:
		err = r.startProcLocked(p, gen, nil)
	}
	r.mu.Unlock()
	if err != nil {
		return err
	}
	return r.awaitRebuild(ctx, p, gen)
}

// AwaitRebuild waits for the rebuild of name in progress, if any, as
// Rebuild waits for the one it starts: it returns nil once the new
// generation is active and the old one dropped (at once when no rebuild
// is in progress), a *HaltedError while the rebuild is halted, or ctx's
// error, or one wrapping ErrStopped once the runner is stopped, the
// rebuild carrying on.
func (r *Runner) AwaitRebuild(ctx context.Context, name string) error {
	p, st, err := r.compiledState(ctx, name)
	if err != nil {
		return err
	}
	if st.Building == 0 {
		return nil
	}
	return r.awaitRebuild(ctx, p, st.Building)
}

// beginRebuild records, through a unit's rows, that name's next
// generation is being built, and returns it.
func beginRebuild(ctx context.Context, rows feed.Rows, p *compiled) (int, error) {
	name := p.name
	st, err := mustState(ctx, rows, name, feed.LockUpdate)
	if err != nil {
		return 0, err
	}
	if st.Building != 0 {
		return 0, fmt.Errorf("%w: %q is building generation %d", ErrRebuildInProgress, name, st.Building)
	}
	gen := max(st.Last, st.Active) + 1
	st.Building, st.Last = gen, gen
	st.BuildingTypes, st.BuildingSince = p.handledTypes(), time.Now().UTC()
	return gen, writeState(ctx, rows, name, st, events.Token{})
}

// awaitRebuild waits until gen is active and the generations it replaced
// are dropped, or reports why that cannot be.
func (r *Runner) awaitRebuild(ctx context.Context, p *compiled, gen int) error {
	poll := time.NewTicker(r.cfg.StatusPollInterval)
	defer poll.Stop()
	for {
		changed := r.changed.C()
		st, err := mustState(ctx, r.cfg.Source.Rows(), p.name, feed.LockNone)
		if r.awaitHook != nil {
			r.awaitHook(gen)
		}
		switch {
		case err != nil:
			return err
		case st.Active >= gen && len(st.Dropping) == 0:
			// A later generation active is a rebuild that superseded gen.
			r.stopRebuild(ctx, p, gen)
			return nil
		case st.Building > gen && st.Active < gen:
			// Superseded by a build with other handlers (supersede): its
			// generation is the one this rebuild now waits for.
			r.stopRebuild(ctx, p, gen)
			gen = st.Building
			continue
		case st.Active < gen && st.Building != gen:
			return fmt.Errorf("projections: rebuild of %q to generation %d was abandoned (generation %d is active)", p.name, gen, st.Active)
		case st.Building == gen:
			if r.mayTakeOver(p, st) {
				break // the monitor restarts it with this build's handlers
			}
			if h, err := r.haltOf(ctx, p.checkpoints(rebuildName(p.name, gen))); err != nil {
				return err
			} else if h != nil {
				return &HaltedError{Projection: p.name, Generation: gen, EventID: h.EventID, Reason: h.Reason}
			}
			if r.standingBy(p) {
				break // a process of the newer build switches it in
			}
			if _, err := r.trySwitch(ctx, p, gen); err != nil && ctx.Err() == nil {
				r.log.Warn("projections: switch attempt failed; trying again", "projection", p.name, "generation", gen, "error", err)
			}
		default:
			r.mu.Lock()
			if r.state == stateRunning {
				r.dropLaterLocked(p)
			}
			r.mu.Unlock()
		}
		select {
		case <-changed:
		case <-poll.C:
		case <-ctx.Done():
			return ctx.Err()
		case <-r.stopped:
			// Stop closed the rebuild's processor, so the state will not
			// move here any more: waiting on would block forever.
			return fmt.Errorf("%w: the rebuild of %q to generation %d is still recorded; a runner started later (a new one, here or in another process) carries it on, and Runner.AwaitRebuild waits for it", ErrStopped, p.name, gen)
		}
	}
}

// trySwitch makes generation gen active if its rebuild has caught up: its
// position (the lowest of its partitions') is at or past the live
// processor's, and no event the projection handles was committed after it.
// Everything the live generation reflects, the new one then reflects too. The state row is taken with LockUpdate, so the units of
// both processors and of strong appends, which take it with LockShare,
// are either committed before the positions are read or see the switch.
func (r *Runner) trySwitch(ctx context.Context, p *compiled, gen int) (switched bool, err error) {
	if r.switchHook != nil {
		defer func() {
			if !switched {
				r.switchHook(p.name)
			}
		}()
	}
	cps := r.cfg.Source.Checkpoints()
	live := p.checkpoints(p.name)
	rebuild := p.checkpoints(rebuildName(p.name, gen))
	// A cheap look first, so a rebuild far behind never locks the state
	// row, which would hold up the live processor and strong appends.
	l, err := lowestPosition(ctx, cps, live)
	if err != nil {
		return false, err
	}
	b, err := lowestPosition(ctx, cps, rebuild)
	if err != nil || b.Before(l) {
		return false, err
	}
	if more, err := r.handledAfter(ctx, p, b); err != nil || more {
		return false, err
	}
	var old int
	var at events.Token
	outer := ctx
	var epoch uint64
	if r.cfg.Tracker != nil {
		epoch = r.cfg.Tracker.Epoch(p.name)
	}
	err = withUnit(ctx, cps, func(ctx context.Context, u feed.Unit) error {
		switched = false
		st, err := mustState(ctx, u.Rows(), p.name, feed.LockUpdate)
		if err != nil || st.Building != gen {
			return err
		}
		if p.kinOf(st.BuildingTypes) != sameBuild {
			// Begun by a build with other handlers: its generation
			// reflects the feed as that build sees it.
			return nil
		}
		pos, err := u.Positions(ctx, append(live, rebuild...)...)
		if err != nil {
			return fmt.Errorf("projections: switch %q: %w", p.name, err)
		}
		l, b := lowest(pos[:len(live)]), lowest(pos[len(live):])
		if b.Before(l) {
			return nil
		}
		// The live generation may reflect more than its checkpoint says:
		// strong projections are applied inside the appends; partitions
		// move apart (SkipTo is one position for all); a live processor
		// whose partitions were merged skips what a faster old partition
		// handled. So the new generation must reflect every handled event
		// committed so far. Under appends that never pause this may not
		// come (a known limit: see the package doc).
		// Appends in flight hold the state row with LockShare: they
		// committed before this lock was granted (PostgreSQL), or their
		// commit will conflict with the switch (memory).
		//
		// The read runs on another connection while this unit holds the
		// lock that units of the live processor, of the rebuild and of
		// strong appends wait for, each holding a connection: on a small
		// pool the read could wait for a connection that only frees once
		// the lock does. So it gets a short deadline, and a read that
		// misses it only means "not now".
		cctx, cancel := context.WithTimeout(outer, switchReadTimeout)
		more, err := r.handledAfter(cctx, p, b)
		cancel()
		if err != nil && cctx.Err() != nil && outer.Err() == nil {
			r.log.Debug("projections: switch check timed out; trying again later", "projection", p.name)
			return nil
		}
		if err != nil || more {
			return err
		}
		old, at = st.Active, b
		st.Active, st.Building, st.SkipTo = gen, 0, b
		st.BuildingTypes, st.BuildingSince = nil, time.Time{}
		st.Dropping = append(st.Dropping, old)
		if err := writeState(ctx, u.Rows(), p.name, st, b); err != nil {
			return err
		}
		// A halt of the old generation is moot: the new one is past it.
		for _, cp := range live {
			if err := u.Rows().Delete(ctx, feed.RuntimeNamespace, feed.HaltsTable, cp); err != nil {
				return fmt.Errorf("projections: switch %q: clear halt: %w", p.name, err)
			}
		}
		// So is a dead letter of the old generation: the rebuild applied
		// its event (it halts on an event it cannot apply), and a replay
		// would now be skipped as at or before SkipTo. The live processor
		// waits for this unit's lock, so every dead letter it stored is of
		// an event at or before its position, which is at or before b.
		if err := dropDeadLetters(ctx, u.Rows(), p.name, func(t events.Token) bool { return !t.After(b) }); err != nil {
			return fmt.Errorf("projections: switch %q: drop dead letters: %w", p.name, err)
		}
		switched = true
		return nil
	})
	if err != nil || !switched {
		return false, err
	}
	r.log.Info("projections: switched generation", "projection", p.name, "generation", gen, "old_generation", old, "position", at.String())
	// Live views hear of the switch before waiters are let through on it
	// (the order RunnerConfig.OnUpdate promises).
	if r.cfg.OnUpdate != nil {
		r.cfg.OnUpdate(Update{Kind: UpdateReplaced, Projection: p.name, Generation: gen, Token: at})
	}
	if r.cfg.Tracker != nil && !at.IsZero() {
		// The new generation reflects every event up to at, even while the
		// live checkpoint is still moving up to it. Not after a reset the
		// tracker heard of since the switch began (made here or in another
		// process): its events are being applied again, and this advance
		// would undo it.
		r.cfg.Tracker.AdvanceAt(p.name, at, epoch)
	}
	r.mu.Lock()
	var live0 *procRun
	if pr := r.procs[p.name]; pr != nil {
		live0 = pr
	}
	if r.state == stateRunning {
		r.dropLaterLocked(p)
	}
	r.mu.Unlock()
	if live0 != nil {
		// Wake a live partition halted in this process: its halt is gone.
		if _, err := live0.proc.Resume(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("projections: wake halted partitions after the switch", "projection", p.name, "error", err)
		}
	}
	r.stopRebuild(ctx, p, gen)
	r.changed.Notify()
	return true, nil
}

// handledAfter reports whether the feed holds an event p handles after pos,
// or may hold one not readable yet (an older transaction still open).
func (r *Runner) handledAfter(ctx context.Context, p *compiled, pos events.Token) (bool, error) {
	batch, err := r.cfg.Source.ReadFeed(ctx, pos, feed.Filter{Types: p.typeList()}, 1)
	if err != nil {
		return false, fmt.Errorf("projections: switch %q: read the feed: %w", p.name, err)
	}
	return len(batch.Events) > 0 || batch.Pending, nil
}

// stopRebuild stops the processor of p's rebuild gen in this process, if it
// runs here, and deletes its checkpoints once its leases are free. The
// processor stays listed until then, so a concurrent caller (the monitor,
// Rebuild, Stop) waits for the same close (closeProc runs once) instead of
// deleting under a lease still held. The deletion is not cut short by a
// Stop: this may be the last process that knows the checkpoints are over.
func (r *Runner) stopRebuild(ctx context.Context, p *compiled, gen int) {
	name := rebuildName(p.name, gen)
	r.mu.Lock()
	pr := r.procs[name]
	r.mu.Unlock()
	if pr != nil {
		r.closeProc(pr)
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	r.deleteCheckpoints(dctx, p.checkpoints(name))
	cancel()
	r.mu.Lock()
	if pr != nil && r.procs[name] == pr {
		delete(r.procs, name)
	}
	r.mu.Unlock()
}

// deleteCheckpoints forgets checkpoints nobody runs any more, so they do
// not lag forever in the lag monitor. A lease still held elsewhere keeps
// its checkpoint; that process deletes it when it stops its processor.
func (r *Runner) deleteCheckpoints(ctx context.Context, names []string) {
	d, ok := r.cfg.Source.Checkpoints().(feed.CheckpointDeleter)
	if !ok {
		return
	}
	if _, err := d.DeleteCheckpoints(ctx, names...); err != nil {
		r.log.Warn("projections: delete finished rebuild checkpoints", "checkpoints", names, "error", err)
	}
}

// dropLaterLocked drops p's old generations in the background, unless that
// is already under way. The caller holds r.mu.
func (r *Runner) dropLaterLocked(p *compiled) {
	if r.dropping[p.name] {
		return
	}
	r.dropping[p.name] = true
	ctx := r.runCtx
	r.bg.Go(func() {
		defer func() {
			r.mu.Lock()
			delete(r.dropping, p.name)
			r.mu.Unlock()
			r.changed.Notify()
		}()
		if err := r.drop(ctx, p); err != nil && ctx.Err() == nil {
			r.log.Warn("projections: dropping an old generation failed (retried on the next pass)", "projection", p.name, "error", err)
		}
	})
}

// drop deletes the rows of p's generations waiting to be dropped, in
// batches of RunnerConfig.DropBatch rows, each its own short transaction:
// a big read model never holds the feed's read horizon back for long, and
// a failure leaves the batches done so far done.
func (r *Runner) drop(ctx context.Context, p *compiled) error {
	st, err := mustState(ctx, r.cfg.Source.Rows(), p.name, feed.LockNone)
	if err != nil {
		return err
	}
	for _, gen := range st.Dropping {
		if gen == st.Active || gen == st.Building {
			continue // never: generations only move forward
		}
		ns := rowNamespace(p.name, gen)
		total := 0
		for {
			n, err := r.cfg.Source.Rows().DeleteNamespace(ctx, ns, r.cfg.DropBatch)
			if err != nil {
				return fmt.Errorf("projections: drop generation %d of %q: %w", gen, p.name, err)
			}
			total += n
			if r.dropHook != nil {
				r.dropHook(p.name, gen, n)
			}
			if n < r.cfg.DropBatch {
				break
			}
		}
		if err := removeDropped(ctx, r.cfg.Source.Checkpoints(), p.name, gen); err != nil {
			return err
		}
		r.log.Info("projections: dropped an old generation", "projection", p.name, "generation", gen, "rows", total)
	}
	return nil
}

// monitor keeps this process in line with the projections' state rows,
// which other processes change too: it runs the rebuild a state row asks
// for, stops the ones that are over, switches rebuilds that caught up,
// drops old generations, and forgets rebuild checkpoints left behind.
func (r *Runner) monitor(ctx context.Context) {
	poll := time.NewTicker(r.cfg.StatusPollInterval)
	defer poll.Stop()
	// Each projection's checkpoints are swept once, at the first pass that
	// can list them: a failed listing is no "nothing left behind".
	unswept := make(map[string]bool, len(r.list))
	r.mu.Lock()
	for _, p := range r.list {
		unswept[p.name] = true
		r.mootLetters[p.name] = true
	}
	r.mu.Unlock()
	for {
		changed := r.changed.C()
		for _, p := range r.list {
			if r.reconcile(ctx, p, unswept[p.name]) {
				delete(unswept, p.name)
			}
		}
		r.serveRequests(ctx)
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
		case <-changed:
		}
	}
}

// reconcile brings p in line with its state row, and sweeps its left-behind
// rebuild checkpoints when sweep is set; it reports whether it swept them.
func (r *Runner) reconcile(ctx context.Context, p *compiled, sweep bool) (swept bool) {
	octx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	st, err := mustState(octx, r.cfg.Source.Rows(), p.name, feed.LockNone)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Debug("projections: read state", "projection", p.name, "error", err)
		}
		return false
	}
	r.clearMoot(octx, p, st)
	if r.reconcileHook != nil {
		r.reconcileHook(p.name)
	}
	// A process standing by for another build's (whose processes handle
	// what this one does not) neither runs the rebuild nor switches it in:
	// it would replay the feed, and judge the switch, by its own older
	// handlers, and the new generation would miss the events only the
	// newer build handles.
	standby := r.standingBy(p)
	if st.Building != 0 && !standby && r.mayTakeOver(p, st) {
		if gen, err := r.supersede(octx, p, st.Building); err != nil || gen == 0 {
			if err != nil && ctx.Err() == nil {
				r.log.Warn("projections: restart a rebuild begun by another build", "projection", p.name, "generation", st.Building, "error", err)
			}
			return false
		}
		if st, err = mustState(octx, r.cfg.Source.Rows(), p.name, feed.LockNone); err != nil {
			return false
		}
		sweep = true // the superseded rebuild's checkpoints: nobody runs it now
	}
	// Only runners of the build that began the rebuild run it.
	run := st.Building != 0 && !standby && p.kinOf(st.BuildingTypes) == sameBuild
	var over []int
	r.mu.Lock()
	if r.state != stateRunning {
		r.mu.Unlock()
		return false
	}
	for _, pr := range r.procs {
		// A rebuild newer than st.Last began after st was read (Rebuild
		// starts its processor once the state row records it): st cannot
		// tell it is over, and stopping it would delete its checkpoint
		// and replay the feed a second time into rows it already wrote.
		if pr.proj == p && pr.rebuild != 0 && pr.rebuild != st.Building && pr.rebuild <= st.Last {
			over = append(over, pr.rebuild)
		}
	}
	if run {
		if err := r.startProcLocked(p, st.Building, nil); err != nil {
			r.log.Warn("projections: start rebuild", "projection", p.name, "generation", st.Building, "error", err)
		}
	}
	if len(st.Dropping) > 0 {
		r.dropLaterLocked(p)
	}
	r.mu.Unlock()
	for _, gen := range over {
		r.stopRebuild(octx, p, gen)
	}
	if sweep || len(over) > 0 {
		swept = r.sweepCheckpoints(octx, p, st)
	}
	if run {
		if _, err := r.trySwitch(octx, p, st.Building); err != nil && ctx.Err() == nil {
			r.log.Warn("projections: switch attempt failed; trying again", "projection", p.name, "error", err)
		}
	}
	return swept
}

// standingBy reports whether this runner leaves p's rebuilds to other
// processes: its live processor runs but its partitions do not go to it
// (feed.Processor.IsAssigned), because it stands by for processes of
// another build or because its first membership heartbeat has not
// answered yet. A process of an older build that starts during a rebuild
// is such a one until then: judged alone, it switched the rebuild in by
// its older handlers. A live processor mounted on the application's
// router (AddHandlers) that does not run yet (the router has not started)
// knows nothing of the others: the runner acts alone, as a process that
// runs no router does.
func (r *Runner) standingBy(p *compiled) bool {
	r.mu.Lock()
	pr := r.procs[p.name]
	r.mu.Unlock()
	if pr == nil || pr.proc == nil {
		return false
	}
	if pr.router == nil && !pr.proc.Status().Heartbeating {
		return false
	}
	ok, _ := pr.proc.IsAssigned()
	return !ok
}

// sweepCheckpoints deletes p's rebuild checkpoints other than those of the
// rebuild st records and of rebuilds begun after st was read: left behind
// by a process that stopped before it could delete them. It reports
// whether it could list them.
func (r *Runner) sweepCheckpoints(ctx context.Context, p *compiled, st state) bool {
	in, ok := r.cfg.Source.(feed.Inspector)
	if !ok {
		return true // nothing to list them with: nothing to come back for
	}
	cs, err := in.Consumers(ctx)
	if err != nil {
		return false
	}
	prefix := rebuildName(p.name, 0)
	prefix = prefix[:len(prefix)-1]
	var names []string
	for _, c := range cs {
		base, _, _ := strings.Cut(c.Name, "#")
		suffix, ok := strings.CutPrefix(base, prefix)
		if !ok {
			continue
		}
		if gen, err := strconv.Atoi(suffix); err == nil && (gen == st.Building || gen > st.Last) {
			continue
		}
		names = append(names, c.Name)
	}
	if len(names) > 0 {
		r.deleteCheckpoints(ctx, names)
	}
	return true
}

// haltOf returns the first halt record among checkpoints, nil when none is
// halted.
func (r *Runner) haltOf(ctx context.Context, checkpoints []string) (*feed.HaltRecord, error) {
	for _, cp := range checkpoints {
		row, ok, err := r.cfg.Source.Rows().Get(ctx, feed.RuntimeNamespace, feed.HaltsTable, cp, feed.LockNone)
		if err != nil {
			return nil, fmt.Errorf("projections: read halt of %q: %w", cp, err)
		}
		if !ok {
			continue
		}
		h, err := decodeHalt(row)
		if err != nil {
			return nil, err
		}
		return &h, nil
	}
	return nil, nil
}

func lowestPosition(ctx context.Context, cps feed.CheckpointStore, names []string) (events.Token, error) {
	pos := make([]events.Token, len(names))
	for i, n := range names {
		var err error
		if pos[i], err = cps.Position(ctx, n); err != nil {
			return events.Token{}, fmt.Errorf("projections: position of %q: %w", n, err)
		}
	}
	return lowest(pos), nil
}

func lowest(pos []events.Token) events.Token {
	var low events.Token
	for i, p := range pos {
		if i == 0 || p.Before(low) {
			low = p
		}
	}
	return low
}

// opTimeout bounds each pass of the runner's own bookkeeping.
const opTimeout = 10 * time.Second

// switchReadTimeout bounds the feed read a switch makes while it holds the
// projection's state row.
const switchReadTimeout = time.Second

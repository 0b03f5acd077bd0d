package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// Status reports a projection's generation, state and position, and how
// this runner's live processor of it fares (Status.Consumer). When the
// store cannot be read, Status returns the error together with a Status
// that still has Name, Class and Consumer, which need no database: a
// caller can report "degraded since T: <error>" while the database is
// unreachable.
func (r *Runner) Status(ctx context.Context, name string) (Status, error) {
	p, err := r.compiled(name)
	if err != nil {
		return Status{}, err
	}
	local := Status{Name: name, Class: p.class, Consumer: r.consumerStatus(name)}
	st, err := mustState(ctx, r.cfg.Source.Rows(), name, feed.LockNone)
	if err != nil {
		return local, err
	}
	cps := r.cfg.Source.Checkpoints()
	s := local
	s.Generation, s.State = st.Active, StateRunning
	if s.Checkpoint, err = lowestPosition(ctx, cps, p.checkpoints(name)); err != nil {
		return local, err
	}
	s.Applied = s.Checkpoint
	h, err := r.haltOf(ctx, p.checkpoints(name))
	if err != nil {
		return local, err
	}
	if h != nil {
		s.State, s.HaltedReason, s.HaltedEventID = StateHalted, h.Reason, h.EventID
	}
	if st.Building != 0 {
		b := &RebuildStatus{Generation: st.Building, State: StateRunning}
		rb := p.checkpoints(rebuildName(name, st.Building))
		if b.Checkpoint, err = lowestPosition(ctx, cps, rb); err != nil {
			return local, err
		}
		b.Applied = b.Checkpoint
		if h, err := r.haltOf(ctx, rb); err != nil {
			return local, err
		} else if h != nil {
			b.State, b.HaltedReason, b.HaltedEventID = StateHalted, h.Reason, h.EventID
		}
		s.Rebuild = b
	}
	return s, nil
}

// consumerStatus is what this runner's live processor of name reports
// about its lease and its access to the store, without asking the store:
// a degraded partition first, else one holding its lease, else the first.
// LeaseStopped when this runner does not run it.
func (r *Runner) consumerStatus(name string) feed.ConsumerStatus {
	r.mu.Lock()
	pr := r.procs[name]
	r.mu.Unlock()
	if pr == nil {
		return feed.ConsumerStatus{Consumer: name, Lease: feed.LeaseStopped}
	}
	parts := pr.proc.Status().Partitions
	if len(parts) == 0 {
		return feed.ConsumerStatus{Consumer: name, Lease: feed.LeaseStopped}
	}
	for _, ps := range parts {
		if ps.Consumer.Degraded() {
			return ps.Consumer
		}
	}
	for _, ps := range parts {
		if ps.Consumer.Lease == feed.LeaseHolding {
			return ps.Consumer
		}
	}
	return parts[0].Consumer
}

// Resume lets a halted projection (and its halted rebuild) try the failing
// event again, with a fresh count of attempts. Resuming a running
// projection does nothing. Processors in other processes notice within
// RunnerConfig.StatusPollInterval. A stopped runner's Resume fails with
// ErrStopped and changes nothing; before Start, Resume deletes the halts
// alone.
func (r *Runner) Resume(ctx context.Context, name string) error {
	p, st, err := r.compiledState(ctx, name)
	if err != nil {
		return err
	}
	r.mu.Lock()
	stopped := r.state == stateStopping
	r.mu.Unlock()
	if stopped {
		return fmt.Errorf("%w: resume of %q refused", ErrStopped, name)
	}
	names := p.checkpoints(name)
	if st.Building != 0 {
		names = append(names, p.checkpoints(rebuildName(name, st.Building))...)
	}
	r.mu.Lock()
	var local []*procRun
	for _, pr := range r.procs {
		if pr.proj == p {
			local = append(local, pr)
		}
	}
	r.mu.Unlock()
	for _, pr := range local {
		// Deletes the halt rows and wakes the halted partitions here.
		if _, err := pr.proc.Resume(ctx); err != nil {
			return fmt.Errorf("projections: resume %q: %w", name, err)
		}
	}
	for _, cp := range names {
		if err := r.cfg.Source.Rows().Delete(ctx, feed.RuntimeNamespace, feed.HaltsTable, cp); err != nil {
			return fmt.Errorf("projections: resume %q: %w", name, err)
		}
	}
	r.log.Info("projections: resumed", "projection", name)
	r.changed.Notify()
	return nil
}

// DeadLetters lists the events a projection's live processor gave up on,
// in checkpoint and event id order: all of them, read a page at a time.
func (r *Runner) DeadLetters(ctx context.Context, name string) ([]DeadLetter, error) {
	_, st, err := r.compiledState(ctx, name)
	if err != nil {
		return nil, err
	}
	// A limit of 0 would mean feed.DefaultRowLimit (1,000), cutting the
	// list short without a word; ListDeadLetters pages up to the limit.
	recs, err := feed.ListDeadLetters(ctx, r.cfg.Source.Rows(), name, math.MaxInt)
	if err != nil {
		return nil, fmt.Errorf("projections: dead letters of %q: %w", name, err)
	}
	out := make([]DeadLetter, 0, len(recs))
	for i, rec := range recs {
		out = append(out, deadLetterOf(name, st.Active, int64(i+1), rec))
	}
	return out, nil
}

// RequestReplay records a request to apply dl again, dl being one that
// Runner.DeadLetters listed or OnDeadLetter reported: the processor holding
// its partition (dl.Checkpoint; for a partition of an earlier partition
// count, the one its event belongs to now), here or in another process,
// carries it out within StatusPollInterval, as feed.RequestReplay
// describes. Once it did, the dead letter is no longer listed; if the
// handler failed again, it stays, and feed.ReadReplay with the returned
// request's Key tells why. A request made again replaces a failed one.
//
// RequestReplay fails with ErrUnknownProjection for a projection this
// runner was not given, with ErrForeignDeadLetter when dl.Checkpoint is not
// one of dl.Projection's checkpoints, and with an error wrapping
// feed.ErrNoDeadLetter when the dead letter is gone (replayed already, or
// deleted: a Reset deletes those it applies again). A stopped runner's RequestReplay fails with
// ErrStopped and records nothing; before Start, the request waits for a
// processor to carry it out.
func (r *Runner) RequestReplay(ctx context.Context, dl DeadLetter) (feed.ReplayRequest, error) {
	name := dl.Projection
	if _, err := r.compiled(name); err != nil {
		return feed.ReplayRequest{}, err
	}
	r.mu.Lock()
	stopped := r.state == stateStopping
	r.mu.Unlock()
	if stopped {
		return feed.ReplayRequest{}, fmt.Errorf("%w: replay of %q's dead letter of event %s refused", ErrStopped, name, dl.EventID)
	}
	// Checked here and not left to the look-up: a key under another
	// processor's checkpoint may name a dead letter, which would be
	// replayed through that processor's handler instead.
	if dl.Checkpoint == "" {
		return feed.ReplayRequest{}, fmt.Errorf("%w: the dead letter of event %s has no checkpoint", ErrForeignDeadLetter, dl.EventID)
	}
	if !checkpointOf(name, dl.Checkpoint) {
		return feed.ReplayRequest{}, fmt.Errorf("%w: its checkpoint %q is not one of %q's", ErrForeignDeadLetter, dl.Checkpoint, name)
	}
	req, err := feed.RequestReplay(ctx, r.cfg.Source.Rows(), dl.Checkpoint+"/"+dl.EventID)
	if errors.Is(err, feed.ErrNoDeadLetter) {
		return feed.ReplayRequest{}, fmt.Errorf("%w: %q has none of event %s in %s (replayed already, or deleted: list them again with Runner.DeadLetters)", feed.ErrNoDeadLetter, name, dl.EventID, dl.Checkpoint)
	}
	if err != nil {
		return feed.ReplayRequest{}, fmt.Errorf("projections: replay of %q's dead letter of event %s: %w", name, dl.EventID, err)
	}
	r.log.Info("projections: dead letter replay requested", "projection", name, "checkpoint", dl.Checkpoint, "event_id", dl.EventID)
	return req, nil
}

// checkpointOf reports whether cp is a checkpoint of the live processor of
// the projection named name, under any partition count: dead letters of
// an earlier count stay listed, and are replayed by the current
// partitions.
func checkpointOf(name, cp string) bool {
	if cp == name {
		return true
	}
	base, _, _, ok := feed.ParsePartitionName(cp)
	return ok && base == name
}

// deadLetterOf turns the runtime's record into the projections' form.
func deadLetterOf(name string, gen int, id int64, rec feed.DeadLetterRecord) DeadLetter {
	return DeadLetter{
		ID: id, Projection: name, Checkpoint: rec.Checkpoint, Generation: gen,
		EventID: rec.Event.ID, StreamID: rec.Event.StreamID, Version: rec.Event.Version, Token: rec.Event.Token,
		Type: rec.Event.Type, Payload: append(json.RawMessage(nil), rec.Event.Payload...),
		Reason: rec.Reason, Attempts: rec.Attempts, CreatedAt: rec.At,
	}
}

func decodeHalt(row feed.Row) (feed.HaltRecord, error) {
	var h feed.HaltRecord
	if err := json.Unmarshal(row.Value, &h); err != nil {
		return h, fmt.Errorf("projections: halt record %q does not decode: %w", row.Key, err)
	}
	return h, nil
}

// Reset moves a projection back to tok: its checkpoints are set to tok, in
// one unit with its state, so every event after tok is applied again over
// the current rows (which are not cleared). The projection is also resumed
// if it was halted.
//
// Reset is for projections whose handlers are idempotent upserts (a row
// that holds the latest state of something); for handlers that accumulate
// (counters, appends to lists) replaying events again double-counts: use
// Rebuild. The projection's processor in this runner is paused for the
// reset (feed.Processor.Pause): it finishes or gives up the event in
// hand, gives its leases back and stays where it is mounted, on a router
// of the Runner's own or on yours (AddHandlers), whose handler keeps
// running; once the checkpoints are moved it delivers again from tok.
// Reset needs the lease of every partition of the projection: while
// another process holds one, it fails at once with feed.ErrLeaseHeld and
// moves nothing. Stop the projection in the other processes first, or
// use RequestReset, which every runner running the projection takes part
// in (they pause their processors while the request is unfinished, so the
// runner that makes it can take every lease). A stopped runner's Reset
// fails with ErrStopped and moves nothing; before Start, Reset moves the
// stored checkpoints alone.
func (r *Runner) Reset(ctx context.Context, name string, tok events.Token) error {
	return r.reset(ctx, name, tok, 0)
}

// reset is Reset, waiting up to leaseWait for each partition's lease that
// another process holds (a requested reset: the other runners give them
// back once they see the request, or they expire) instead of failing at
// once with feed.ErrLeaseHeld. The wait ends with ctx.
func (r *Runner) reset(ctx context.Context, name string, tok events.Token, leaseWait time.Duration) error {
	p, err := r.compiled(name)
	if err != nil {
		return err
	}
	r.mu.Lock()
	stopped := r.state == stateStopping
	pr := r.procs[name]
	r.mu.Unlock()
	if stopped {
		return fmt.Errorf("%w: reset of %q refused", ErrStopped, name)
	}
	if pr != nil {
		// Paused rather than closed: a processor on the application's
		// router that ended its subscriptions would leave that router
		// without this handler, and Watermill closes a router whose
		// handlers have all stopped. Resumed after the deferred releases
		// below (deferred calls run last in, first out), so it takes its
		// leases back at once.
		resume, err := pr.proc.Pause(ctx)
		if err != nil {
			return fmt.Errorf("projections: reset %q: pause the processor: %w", name, err)
		}
		defer resume()
	}
	cps := r.cfg.Source.Checkpoints()
	ttl := r.subscriberConfig().LeaseTTL
	if ttl == 0 {
		ttl = feed.DefaultLeaseTTL
	}
	owner := "projections-reset-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	var leases []feed.Lease
	defer func() {
		for _, l := range leases {
			_ = cps.Release(context.WithoutCancel(ctx), l)
		}
	}()
	var moves []feed.Move
	deadline := time.Now().Add(leaseWait)
	for _, cp := range p.checkpoints(name) {
		l, err := acquireWaiting(ctx, cps, cp, owner, ttl, deadline)
		if err == nil {
			leases = append(leases, l)
			err = ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("projections: reset %q: take the processor's lease: %w", name, err)
		}
		if tok.After(l.Position) {
			// A reset moves back; forward, the events in between would
			// never be applied.
			return fmt.Errorf("%w: %q (%s) is at %s, before %s (a token from a later write, or from another database?)", ErrResetAhead, name, cp, l.Position, tok)
		}
		moves = append(moves, feed.Move{Lease: l, Position: tok})
	}
	for attempt := 1; ; attempt++ {
		err = r.resetOnce(ctx, p, tok, moves)
		if !isConflict(err) || attempt >= maxConflictRetries {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("projections: reset %q: %w", name, err)
	}
	if r.cfg.Tracker != nil {
		for _, cp := range p.checkpoints(name) {
			r.cfg.Tracker.Reset(cp, tok)
		}
		if p.partitions > 1 {
			r.cfg.Tracker.Reset(name, tok)
		}
	}
	r.log.Info("projections: reset", "projection", name, "position", tok.String())
	r.changed.Notify()
	return nil
}

// acquireWaiting takes the lease on cp for owner, trying again while
// another owner holds it until deadline (not at all once it has passed),
// or until ctx ends.
func acquireWaiting(ctx context.Context, cps feed.CheckpointStore, cp, owner string, ttl time.Duration, deadline time.Time) (feed.Lease, error) {
	backoff := 5 * time.Millisecond
	for {
		// Not cancelled with ctx: an acquire abandoned mid-flight could
		// still take the lease after the deferred releases ran, holding
		// the projection back for a whole TTL.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ttl)
		l, err := cps.Acquire(actx, cp, owner, ttl)
		cancel()
		if !errors.Is(err, feed.ErrLeaseHeld) || ctx.Err() != nil {
			return l, err
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return l, err
		}
		t := time.NewTimer(min(backoff, wait))
		select {
		case <-ctx.Done():
			t.Stop()
			return l, err
		case <-t.C:
		}
		backoff = min(2*backoff, 250*time.Millisecond)
	}
}

func (r *Runner) resetOnce(ctx context.Context, p *compiled, tok events.Token, moves []feed.Move) error {
	u, err := r.cfg.Source.Checkpoints().Begin(ctx)
	if err != nil {
		return err
	}
	uctx := u.Context(ctx)
	err = func() error {
		st, err := mustState(uctx, u.Rows(), p.name, feed.LockUpdate)
		if err != nil {
			return err
		}
		if st.SkipTo.After(tok) {
			st.SkipTo = tok // events after tok are applied again
		}
		// Events the append hook applied are applied again too, also for a
		// projection that was strong when they were appended and is not
		// now. Appends in flight hold the state row and commit before this
		// unit reads the head (PostgreSQL) or conflict with it (memory).
		// Read on the unit's connection: on a pool of one, another would
		// never come.
		head, err := u.Head(uctx)
		if err != nil {
			return err
		}
		st.MarksUpTo = head
		if err := writeState(uctx, u.Rows(), p.name, st, tok); err != nil {
			return err
		}
		for _, cp := range p.checkpoints(p.name) {
			if err := u.Rows().Delete(uctx, feed.RuntimeNamespace, feed.HaltsTable, cp); err != nil {
				return err
			}
		}
		// Every event after tok is applied again: an old partition count's
		// positions must not make the partitions skip some of them, and a
		// dead letter of one of them is moot (replayed now, it would apply
		// the event again, after later ones).
		if err := feed.ForgetCarriedPositions(uctx, u.Rows(), p.name); err != nil {
			return err
		}
		if err := dropDeadLetters(uctx, u.Rows(), p.name, func(t events.Token) bool { return t.After(tok) }); err != nil {
			return err
		}
		return u.Commit(ctx, moves...)
	}()
	if err != nil {
		_ = u.Rollback(context.WithoutCancel(ctx))
	}
	return err
}

// compiledState returns the projection named name and its stored state,
// as committed.
func (r *Runner) compiledState(ctx context.Context, name string) (*compiled, state, error) {
	p, err := r.compiled(name)
	if err != nil {
		return nil, state{}, err
	}
	st, err := mustState(ctx, r.cfg.Source.Rows(), name, feed.LockNone)
	return p, st, err
}

// dropDeadLetters deletes the processor's dead letters (and replay
// requests for them) of the events moot says are applied again.
func dropDeadLetters(ctx context.Context, rows feed.Rows, name string, moot func(events.Token) bool) error {
	dls, err := feed.ListDeadLetters(ctx, rows, name, math.MaxInt)
	if err != nil {
		return err
	}
	for _, dl := range dls {
		if !moot(dl.Event.Token) {
			continue
		}
		key := dl.Checkpoint + "/" + dl.Event.ID
		if err := rows.Delete(ctx, feed.RuntimeNamespace, feed.DeadLettersTable, key); err != nil {
			return err
		}
		if err := rows.Delete(ctx, feed.RuntimeNamespace, feed.ReplaysTable, key); err != nil {
			return err
		}
	}
	return nil
}

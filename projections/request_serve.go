package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/converge-es/converge/events/feed"
)

// staleClaim is how long a reset may stay taken by a runner before another
// takes it again: the process that took it died before recording the
// outcome. The reset is then made again, which a reset tolerates (it only
// moves checkpoints back).
const staleClaim = 2 * time.Minute

// runnerOwner names this process in the requests it takes.
func runnerOwner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// serveRequests carries out the requests (RequestRebuild, RequestReset)
// for projections this runner has. The monitor calls it on every pass.
func (r *Runner) serveRequests(ctx context.Context) {
	octx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	pending, err := r.pendingRequests(octx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Debug("projections: read requests", "error", err)
		}
		return
	}
	r.followResets(pending)
	for _, q := range pending {
		p := r.projs[q.Projection]
		var serr error
		switch q.Op {
		case OpRebuild:
			if r.standingBy(p) {
				// Only a process the live processor's partitions go to
				// takes it: one standing by for a build that handles more
				// would rebuild with its older handlers (and one whose
				// first heartbeat has not answered may be such a one).
				continue
			}
			serr = r.serveRebuild(octx, p, q)
		case OpReset:
			serr = r.serveReset(ctx, p, q)
		default:
			serr = r.finishRequest(octx, q, RequestFailed, fmt.Sprintf("unknown operation %q", q.Op))
		}
		if serr != nil && ctx.Err() == nil {
			r.log.Warn("projections: serve request; trying again", "projection", p.name, "op", q.Op, "error", serr)
		}
	}
}

// pendingRequests lists the unfinished requests for projections this
// runner has, paging through RequestsTable: it keeps a row per projection
// ever requested, for whichever runner has it, so one page (a List's
// DefaultRowLimit) may hold none of this runner's.
func (r *Runner) pendingRequests(ctx context.Context) ([]Request, error) {
	var out []Request
	q := feed.RowQuery{Limit: feed.DefaultRowLimit}
	for {
		rows, err := r.cfg.Source.Rows().List(ctx, feed.RuntimeNamespace, RequestsTable, q)
		if err != nil {
			return nil, err
		}
		for _, row := range rows {
			if r.projs[row.Key] == nil {
				continue
			}
			var req Request
			if err := json.Unmarshal(row.Value, &req); err != nil {
				r.log.Debug("projections: a request does not decode", "projection", row.Key, "error", err)
				continue
			}
			// Keyed by the projection's name (writeRequest).
			req.Projection = row.Key
			if !req.Finished() {
				out = append(out, req)
			}
		}
		if len(rows) < q.Limit {
			return out, nil
		}
		q.After = rows[len(rows)-1].Key
	}
}

// serveRebuild starts a pending rebuild, and records the outcome of a
// running one: done once its generation is active.
func (r *Runner) serveRebuild(ctx context.Context, p *compiled, q Request) error {
	if q.State == RequestRunning {
		st, err := mustState(ctx, r.cfg.Source.Rows(), p.name, feed.LockNone)
		switch {
		case err != nil:
			return err
		case st.Active >= q.Generation:
			return r.finishRequest(ctx, q, RequestDone, "")
		case st.Building > q.Generation:
			return nil // superseded by a build with other handlers: waits for its generation
		case st.Building != q.Generation:
			return r.finishRequest(ctx, q, RequestFailed,
				fmt.Sprintf("the rebuild of generation %d was abandoned (generation %d is active)", q.Generation, st.Active))
		}
		return nil
	}
	var gen int
	err := withUnit(ctx, r.cfg.Source.Checkpoints(), func(ctx context.Context, u feed.Unit) error {
		gen = 0
		cur, ok, err := readRequest(ctx, u.Rows(), p.name, feed.LockUpdate)
		if err != nil || !ok || cur.ID != q.ID || cur.State != RequestPending {
			return err // taken by another runner meanwhile
		}
		g, err := beginRebuild(ctx, u.Rows(), p)
		if errors.Is(err, ErrRebuildInProgress) {
			cur.State, cur.Error, cur.UpdatedAt = RequestFailed, err.Error(), time.Now().UTC()
			return writeRequest(ctx, u.Rows(), cur)
		}
		if err != nil {
			return err
		}
		gen = g
		cur.State, cur.Generation, cur.Owner, cur.Error, cur.UpdatedAt = RequestRunning, g, r.owner, "", time.Now().UTC()
		return writeRequest(ctx, u.Rows(), cur)
	})
	if err != nil || gen == 0 {
		return err
	}
	r.log.Info("projections: rebuild started on request", "projection", p.name, "generation", gen, "request", q.ID)
	r.mu.Lock()
	if r.state == stateRunning {
		err = r.startProcLocked(p, gen, nil)
	}
	r.mu.Unlock()
	r.changed.Notify()
	return err
}

// resetPause is a pause of a projection's live processor in this runner
// for an unfinished reset request (followResets).
type resetPause struct {
	id     string // the request's
	resume func()
}

// followResets has this runner's live processors follow the reset
// requests: while a reset request of a projection is pending or running,
// its processor here is paused (feed.Processor.Pause), which gives its
// partitions' leases back, so the runner that takes the request, here or
// in another process, can take every partition's lease, although the
// partitions are shared among processes and none holds them all; once the
// request is finished (or replaced) the processor is resumed. The state
// followed is the request's, in the store, so a runner that dies mid-reset
// leaves no pause behind here: its request is taken again once its claim
// is stale (staleClaim), and finished by the runner that takes it. pending
// is every unfinished request of this runner's projections. Only the
// monitor calls it (and endResetPause), so resetPauses needs no lock.
func (r *Runner) followResets(pending []Request) {
	want := map[string]string{} // projection: unfinished reset request
	for _, q := range pending {
		if q.Op == OpReset {
			want[q.Projection] = q.ID
		}
	}
	for name, ps := range r.resetPauses {
		if want[name] != ps.id {
			r.endResetPause(name, ps.id)
		}
	}
	for name, id := range want {
		if _, ok := r.resetPauses[name]; ok {
			continue
		}
		r.mu.Lock()
		pr := r.procs[name]
		running := r.state == stateRunning
		r.mu.Unlock()
		if pr == nil || !running {
			continue
		}
		// Pause waits for handlers in flight; a pause that does not come
		// within opTimeout is tried again on the next pass.
		ctx, cancel := context.WithTimeout(r.runCtx, opTimeout)
		resume, err := pr.proc.Pause(ctx)
		cancel()
		if err != nil {
			if r.runCtx.Err() == nil {
				r.log.Warn("projections: pause for a requested reset; trying again", "projection", name, "request", id, "error", err)
			}
			continue
		}
		if r.resetPauses == nil {
			r.resetPauses = map[string]resetPause{}
		}
		r.resetPauses[name] = resetPause{id: id, resume: resume}
		r.log.Debug("projections: paused for a requested reset", "projection", name, "request", id)
	}
}

// endResetPause resumes name's processor, paused for reset request id,
// unless this runner is stopping: its processors are being closed, and a
// paused processor closes as a running one does.
func (r *Runner) endResetPause(name, id string) {
	ps, ok := r.resetPauses[name]
	if !ok || ps.id != id {
		return
	}
	delete(r.resetPauses, name)
	r.mu.Lock()
	running := r.state == stateRunning
	r.mu.Unlock()
	if running {
		ps.resume()
		r.log.Debug("projections: resumed after a requested reset", "projection", name, "request", id)
	}
}

// resetLeaseWait is how long the runner that took a reset request waits
// for the leases of the projection's partitions that other processes
// hold: they give them back once their monitors see the request (within
// StatusPollInterval, and a handler in flight), or the leases of a process
// that died expire (within the lease TTL).
func (r *Runner) resetLeaseWait() time.Duration {
	ttl := r.subscriberConfig().LeaseTTL
	if ttl == 0 {
		ttl = feed.DefaultLeaseTTL
	}
	return 2*ttl + 2*r.cfg.StatusPollInterval
}

// serveReset takes a pending reset (or one whose runner died) and makes
// it. Every runner running the projection has paused its processor for
// the request (followResets), so this one waits, up to resetLeaseWait, for
// the leases of the partitions other processes held to be given back; if
// they are not, the request goes back to pending and is tried again.
func (r *Runner) serveReset(ctx context.Context, p *compiled, q Request) error {
	if q.State == RequestRunning && time.Since(q.UpdatedAt) < staleClaim {
		return nil
	}
	wait := r.resetLeaseWait()
	octx, cancel := context.WithTimeout(ctx, wait+opTimeout)
	defer cancel()
	taken := false
	err := withUnit(octx, r.cfg.Source.Checkpoints(), func(ctx context.Context, u feed.Unit) error {
		taken = false
		cur, ok, err := readRequest(ctx, u.Rows(), p.name, feed.LockUpdate)
		if err != nil || !ok || cur.ID != q.ID || cur.State != q.State || !cur.UpdatedAt.Equal(q.UpdatedAt) {
			return err
		}
		cur.State, cur.Owner, cur.UpdatedAt = RequestRunning, r.owner, time.Now().UTC()
		taken = true
		return writeRequest(ctx, u.Rows(), cur)
	})
	if err != nil || !taken {
		return err
	}
	rerr := r.reset(octx, p.name, q.To, wait)
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer fcancel()
	switch {
	case rerr == nil:
		r.log.Info("projections: reset on request", "projection", p.name, "position", q.To.String(), "request", q.ID)
		err = r.finishRequest(fctx, q, RequestDone, "")
	case errors.Is(rerr, ErrResetAhead):
		err = r.finishRequest(fctx, q, RequestFailed, rerr.Error())
	case ctx.Err() != nil, errors.Is(rerr, ErrStopped):
		// Stopping: leave it to the next runner.
		return r.finishRequest(fctx, q, RequestPending, "the runner that took it stopped")
	case errors.Is(rerr, feed.ErrLeaseHeld):
		return r.finishRequest(fctx, q, RequestPending, fmt.Sprintf(
			"trying again: other processes running the projection did not give its partitions' leases back within %s: %v", wait, rerr))
	default:
		// The store failed under it (a lease, a read, the commit): that
		// says nothing of the request, which a later pass makes again.
		// Marked failed, it would never be, and `--wait` would fail. (The
		// runner has the projection, so Reset knows it.)
		r.log.Warn("projections: reset on request failed; trying again", "projection", p.name, "request", q.ID, "error", rerr)
		return r.finishRequest(fctx, q, RequestPending, "trying again after: "+rerr.Error())
	}
	if err == nil {
		// Finished: this processor delivers again at once; the other
		// runners resume theirs when their monitors see it.
		r.endResetPause(p.name, q.ID)
	}
	return err
}

// finishRequest records q's new state, unless the request was replaced.
func (r *Runner) finishRequest(ctx context.Context, q Request, s RequestState, msg string) error {
	return withUnit(ctx, r.cfg.Source.Checkpoints(), func(ctx context.Context, u feed.Unit) error {
		cur, ok, err := readRequest(ctx, u.Rows(), q.Projection, feed.LockUpdate)
		if err != nil || !ok || cur.ID != q.ID {
			return err
		}
		cur.State, cur.Error, cur.UpdatedAt = s, msg, time.Now().UTC()
		return writeRequest(ctx, u.Rows(), cur)
	})
}

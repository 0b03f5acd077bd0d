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
	for _, q := range pending {
		p := r.projs[q.Projection]
		var serr error
		switch q.Op {
		case OpRebuild:
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
		g, err := beginRebuild(ctx, u.Rows(), p.name)
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

// serveReset takes a pending reset (or one whose runner died) and makes
// it. A runner whose process cannot take the projection's lease leaves it
// pending for the process that holds it.
func (r *Runner) serveReset(ctx context.Context, p *compiled, q Request) error {
	if q.State == RequestRunning && time.Since(q.UpdatedAt) < staleClaim {
		return nil
	}
	octx, cancel := context.WithTimeout(ctx, opTimeout)
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
	rerr := r.Reset(octx, p.name, q.To)
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer fcancel()
	switch {
	case rerr == nil:
		r.log.Info("projections: reset on request", "projection", p.name, "position", q.To.String(), "request", q.ID)
		return r.finishRequest(fctx, q, RequestDone, "")
	case errors.Is(rerr, ErrResetAhead):
		return r.finishRequest(fctx, q, RequestFailed, rerr.Error())
	case errors.Is(rerr, feed.ErrLeaseHeld):
		return r.finishRequest(fctx, q, RequestPending, "waiting for the process that holds the projection's lease: "+rerr.Error())
	case ctx.Err() != nil, errors.Is(rerr, ErrStopped):
		// Stopping: leave it to the next runner.
		return r.finishRequest(fctx, q, RequestPending, "the runner that took it stopped")
	default:
		// The store failed under it (a lease, a read, the commit): that
		// says nothing of the request, which a later pass makes again.
		// Marked failed, it would never be, and `--wait` would fail. (The
		// runner has the projection, so Reset knows it.)
		r.log.Warn("projections: reset on request failed; trying again", "projection", p.name, "request", q.ID, "error", rerr)
		return r.finishRequest(fctx, q, RequestPending, "trying again after: "+rerr.Error())
	}
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

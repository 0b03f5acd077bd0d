package projections

import (
	"context"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// clearMoot deletes the halts and dead letters of p's live processor on
// events the active generation already reflects: at or before st.SkipTo,
// where a rebuild was switched in. The switch deletes those it finds, but
// a live processor that gave up on an event during its last backoff (its
// give-up reads no state row) may halt or dead-letter it just after: the
// halt would stop the projection for good over an event already applied,
// and the dead letter would list one missing that is not. Halts are
// checked at every monitor pass; dead letters at the first, and after
// this process stored one.
func (r *Runner) clearMoot(ctx context.Context, p *compiled, st state) {
	if st.SkipTo.IsZero() {
		return
	}
	cps := r.cfg.Source.Checkpoints()
	// A halt row that does not decode is not one to judge: left alone.
	moot := func(row feed.Row, skipTo events.Token) bool {
		h, err := decodeHalt(row)
		return err == nil && !h.Token.After(skipTo)
	}
	// The state row again, in the unit that deletes, with LockShare: a
	// Reset (LockUpdate) may have moved SkipTo back since st was read,
	// and what lies past it now is no longer moot.
	lockedSkipTo := func(ctx context.Context, u feed.Unit) (events.Token, error) {
		cur, err := mustState(ctx, u.Rows(), p.name, feed.LockShare)
		return cur.SkipTo, err
	}
	for _, cp := range p.checkpoints(p.name) {
		row, ok, err := r.cfg.Source.Rows().Get(ctx, feed.RuntimeNamespace, feed.HaltsTable, cp, feed.LockNone)
		if err != nil || !ok || !moot(row, st.SkipTo) {
			continue
		}
		cleared := false
		err = withUnit(ctx, cps, func(ctx context.Context, u feed.Unit) error {
			// Locked and read again: the partition may have been resumed
			// and halted on a later event meanwhile.
			skipTo, err := lockedSkipTo(ctx, u)
			if err != nil {
				return err
			}
			row, ok, err := u.Rows().Get(ctx, feed.RuntimeNamespace, feed.HaltsTable, cp, feed.LockUpdate)
			if err != nil || !ok || !moot(row, skipTo) {
				return err
			}
			cleared = true
			return u.Rows().Delete(ctx, feed.RuntimeNamespace, feed.HaltsTable, cp)
		})
		if err != nil {
			r.log.Warn("projections: clear a halt on an event the active generation reflects", "projection", p.name, "checkpoint", cp, "error", err)
			continue
		}
		if cleared {
			// The partition finds its halt row gone at its next halt check
			// and delivers again; the event is then skipped as applied.
			r.log.Info("projections: cleared a halt on an event the active generation already reflects (given up on as a rebuild was switched in)", "projection", p.name, "checkpoint", cp)
		}
	}
	r.mu.Lock()
	check := r.mootLetters[p.name]
	delete(r.mootLetters, p.name)
	r.mu.Unlock()
	if !check {
		return
	}
	err := withUnit(ctx, cps, func(ctx context.Context, u feed.Unit) error {
		skipTo, err := lockedSkipTo(ctx, u)
		if err != nil {
			return err
		}
		return dropDeadLetters(ctx, u.Rows(), p.name, func(t events.Token) bool { return !t.After(skipTo) })
	})
	if err != nil {
		r.mu.Lock()
		r.mootLetters[p.name] = true // next pass
		r.mu.Unlock()
		r.log.Warn("projections: clear dead letters of events the active generation reflects", "projection", p.name, "error", err)
	}
}

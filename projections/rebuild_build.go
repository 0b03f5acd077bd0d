package projections

import (
	"context"
	"slices"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// supersedeGrace is how long a rebuild recorded by a build that handles a
// type this runner does not stays left to that build's processes. Past it,
// a runner whose live processor's partitions go to it (no process of that
// build took them back) restarts the rebuild with its own handlers: the
// build that began it is gone (a rollback), and the rebuild would wait for
// it forever.
const supersedeGrace = time.Minute

// kin says how the build that recorded a rebuild relates to this runner's,
// judged by the event types each handles.
type kin int

const (
	// sameBuild: the same handled types (or a record from a version that
	// did not say): this runner may run the rebuild and switch it in.
	sameBuild kin = iota
	// olderBuild: the recorded build handles fewer types than this runner:
	// its generation would miss what only this runner handles.
	olderBuild
	// otherBuild: the recorded build handles a type this runner does not.
	otherBuild
)

// handledTypes returns the stored names of the types c handles, aliases
// included, sorted: what a rebuild's record says of the build that runs
// it. They are what the live processor's membership compares too
// (feed.ProcessorConfig.Types), so a build that renamed a type, keeping
// the old name as an alias, counts as handling more than the one before.
func (c *compiled) handledTypes() []string {
	return slices.Clone(c.typeList())
}

// kinOf relates the build that recorded types to c.
func (c *compiled) kinOf(types []string) kin {
	if len(types) == 0 {
		return sameBuild
	}
	mine := c.handledTypes()
	for _, t := range types {
		if _, ok := slices.BinarySearch(mine, t); !ok {
			return otherBuild
		}
	}
	if len(mine) > len(types) {
		return olderBuild
	}
	return sameBuild
}

// supersede restarts the rebuild recorded as generation old under a new
// generation recorded by this runner's build, and has old's rows dropped;
// it returns the new generation, or 0 when the state row no longer
// records old (another runner switched or superseded it meanwhile). Units
// of old's processor take the state row with LockShare and apply nothing
// once it records another generation, so nothing writes old's rows after
// this unit commits.
func (r *Runner) supersede(ctx context.Context, p *compiled, old int) (int, error) {
	var gen int
	err := withUnit(ctx, r.cfg.Source.Checkpoints(), func(ctx context.Context, u feed.Unit) error {
		gen = 0
		st, err := mustState(ctx, u.Rows(), p.name, feed.LockUpdate)
		if err != nil || st.Building != old {
			return err
		}
		gen = max(st.Last, st.Active) + 1
		st.Dropping = append(st.Dropping, old)
		st.Building, st.Last = gen, gen
		st.BuildingTypes, st.BuildingSince = p.handledTypes(), time.Now().UTC()
		if err := writeState(ctx, u.Rows(), p.name, st, events.Token{}); err != nil {
			return err
		}
		// A halt of old's processor no longer stands in anybody's way,
		// and must not be reported as this rebuild's.
		for _, cp := range p.checkpoints(rebuildName(p.name, old)) {
			if err := u.Rows().Delete(ctx, feed.RuntimeNamespace, feed.HaltsTable, cp); err != nil {
				return err
			}
		}
		// The request that began old follows to gen: its outcome, and
		// what the CLI reports of its progress, are gen's.
		q, ok, err := readRequest(ctx, u.Rows(), p.name, feed.LockUpdate)
		if err != nil || !ok || q.Op != OpRebuild || q.State != RequestRunning || q.Generation != old {
			return err
		}
		q.Generation, q.UpdatedAt = gen, time.Now().UTC()
		return writeRequest(ctx, u.Rows(), q)
	})
	if err != nil || gen == 0 {
		return 0, err
	}
	r.log.Warn("projections: a rebuild was recorded by a build with other handlers; restarted with this build's", "projection", p.name, "old_generation", old, "generation", gen)
	return gen, nil
}

// mayTakeOver reports whether this runner restarts st's rebuild with its
// own handlers instead of leaving it to the build that recorded it:
// always when that build is older (handles less), and when it handles a
// type this runner does not only once supersedeGrace has passed.
func (r *Runner) mayTakeOver(p *compiled, st state) bool {
	switch p.kinOf(st.BuildingTypes) {
	case olderBuild:
		return true
	case otherBuild:
		return !st.BuildingSince.IsZero() && time.Since(st.BuildingSince) > r.supersedeAfter
	}
	return false
}

package projections

import (
	"context"
	"time"
)

// SetDropHook makes r report every batch of rows a drop deletes.
func SetDropHook(r *Runner, fn func(projection string, gen, rows int)) { r.dropHook = fn }

// SetReconcileHook makes the monitor of r call fn after each state row it
// reads, before acting on it. Set it before Start.
func SetReconcileHook(r *Runner, fn func(projection string)) { r.reconcileHook = fn }

// SetRebuildHook makes r call fn with a rebuild processor's name before it
// starts delivering (fn may block to hold the rebuild back). Set it before
// Start.
func SetRebuildHook(r *Runner, fn func(ctx context.Context, processor string)) { r.rebuildHook = fn }

// SetSwitchHook makes r call fn after each attempt to switch a rebuild in
// that did not switch. Set it before Start.
func SetSwitchHook(r *Runner, fn func(projection string)) { r.switchHook = fn }

// SetSupersedeGrace sets how long r leaves a rebuild begun by a build
// handling a type it does not to that build. Set it before Start.
func SetSupersedeGrace(r *Runner, d time.Duration) { r.supersedeAfter = d }

// SetAwaitHook makes r call fn with the generation a Rebuild or
// AwaitRebuild waits for at each pass of its wait. Set it before Start.
func SetAwaitHook(r *Runner, fn func(gen int)) { r.awaitHook = fn }

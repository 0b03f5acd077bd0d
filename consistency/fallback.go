package consistency

import (
	"context"
	"time"
)

// fallbackLoop is the tracker's one background goroutine. Every
// FallbackInterval it re-reads positions from the store, and Advance then
// wakes the waiters exactly as a push would. Reading here, once per name
// per tick, rather than in each waiter keeps the database load independent
// of how many requests wait.
//
// While push is not trusted it reads the names somebody is waiting on, and
// the names whose position it knows. The known names are read too because
// a wait answered from a known position never blocks, so it would never
// have them read: a rewind made elsewhere (another process's Reset) while
// push is down would go unnoticed, and reads of the rewound model would be
// labelled fresh for as long as nothing else moved it. For the same reason
// the names are read once more on the first tick after push is trusted
// again: the moves announced while it was down were lost, not delayed.
//
// While push is trusted it reads the names waited on at this tick and at
// the one before, and the names a wait ended stale on (at its deadline, or
// refused at MaxWaiters) since the last tick. A healthy push can still miss a move: a writer whose
// connection dies between its commit and its NOTIFY moves the checkpoint
// and tells nobody, and nothing sends that notification again. Without a
// read, every wait on a model that does not move again (an idle one: for
// ever) would end stale although the store holds the position. Asking for
// waits at two ticks in a row, or a wait that ended stale, spares a name
// whose waits push answers in time any read (one waited on without pause,
// or whose waits keep ending stale, is read once per tick), and leaves an
// idle tracker reading nothing. The stale endings catch waits shorter than
// an interval, which no tick may see open.
func (t *Tracker) fallbackLoop(ctx context.Context) {
	defer close(t.loopDone)
	ticks := t.fallbackTicks
	if ticks == nil {
		ticker := time.NewTicker(t.cfg.FallbackInterval)
		defer ticker.Stop()
		ticks = ticker.C
	}
	// Start reads every name it is given, so the loop begins in step.
	wasTrusted := true
	var waitedBefore map[string]bool
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.verifyKick:
			t.verifyReported(ctx)
			continue
		case <-ticks:
		}
		waited := t.waitedNames()
		endedStale := t.takeEndedStale()
		trusted := t.pushTrusted()
		if trusted && wasTrusted {
			var names []string
			for name := range waited {
				if waitedBefore[name] {
					names = append(names, name)
				}
			}
			for name := range endedStale {
				names = append(names, name)
			}
			t.readAll(ctx, names) // a failure is logged; the next tick reads again
		} else if t.poll(ctx) || !trusted {
			// The read after push returns is retried until it reads
			// every name: a failed one could hide the rewind it exists
			// to find.
			wasTrusted = trusted
		}
		waitedBefore = waited
		if t.passHook != nil {
			t.passHook()
		}
	}
}

// waitedNames returns the names with an active wait.
func (t *Tracker) waitedNames() map[string]bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	waited := make(map[string]bool)
	for name, cp := range t.names {
		if cp.active > 0 {
			waited[name] = true
		}
	}
	return waited
}

// poll reads every name with an active wait or a known position (a
// group's through its members). It reports whether every name was read.
func (t *Tracker) poll(ctx context.Context) bool {
	t.mu.Lock()
	var names []string
	for name, cp := range t.names {
		_, isGroup := t.groups[name]
		if cp.active > 0 || cp.known && !isGroup {
			names = append(names, name)
		}
	}
	t.mu.Unlock()
	return t.readAll(ctx, names)
}

// readAll reads names, a group's through its members, each stored position
// once however many of names stand for it, within one interval or
// QueryTimeout, whichever is longer. It reports whether every one was read.
func (t *Tracker) readAll(ctx context.Context, names []string) bool {
	if len(names) == 0 {
		return true
	}
	t.mu.Lock()
	names = t.membersLocked(names)
	t.mu.Unlock()
	// At least QueryTimeout: an interval shorter than a busy store takes
	// to answer would make every read run out of time, and the waits
	// would hear nothing until push came back.
	pctx, cancel := context.WithTimeout(ctx, max(t.cfg.FallbackInterval, t.cfg.QueryTimeout))
	defer cancel()
	all := true
	for _, name := range names {
		if pctx.Err() != nil {
			return false
		}
		if err := t.read(pctx, name); err != nil {
			all = false // logged; the next poll reads again
		}
	}
	return all
}

// membersLocked returns the names whose stored positions names stand for:
// a group's members, theirs in turn, in place of the group, each once. A
// member of two groups, or named beside its group, costs one read, not
// one per mention; groups made members of each other in a circle end the
// walk as they end startReadLocked's.
func (t *Tracker) membersLocked(names []string) []string {
	seen := make(map[string]bool, len(names))
	var out []string
	var walk func(name string)
	walk = func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		members, isGroup := t.groups[name]
		if !isGroup {
			out = append(out, name)
			return
		}
		for _, m := range members {
			walk(m)
		}
	}
	for _, name := range names {
		walk(name)
	}
	return out
}

// verifyReported reads the names a watcher reported behind the tracker
// (see watched): a read that finds the store behind too, with nothing
// moved meanwhile, resets the name. It reads the groups made unknown under
// waits too (see readForWaitersLocked), which learn their members so.
func (t *Tracker) verifyReported(ctx context.Context) {
	t.mu.Lock()
	names := make([]string, 0, len(t.verify))
	for name := range t.verify {
		names = append(names, name)
	}
	clear(t.verify)
	t.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, t.cfg.QueryTimeout)
	defer cancel()
	for _, name := range names {
		_ = t.read(rctx, name) // logged; a later report reads again
	}
}

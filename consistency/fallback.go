package consistency

import (
	"context"
	"time"
)

// fallbackLoop is the tracker's one background goroutine. While push is not
// trusted it re-reads, every FallbackInterval, the positions of the names
// somebody is waiting on, and of the names whose position it knows;
// Advance then wakes those waiters exactly as a push would. Polling here,
// once per name per tick, rather than in each waiter keeps the database
// load independent of how many requests wait.
//
// The known names are read too because a wait answered from a known
// position never blocks, so it would never have them read: a rewind made
// elsewhere (another process's Reset) while push is down would go
// unnoticed, and reads of the rewound model would be labelled fresh for
// as long as nothing else moved it. For the same reason the names are read
// once more on the first tick after push is trusted again: the moves
// announced while it was down were lost, not delayed.
func (t *Tracker) fallbackLoop(ctx context.Context) {
	defer close(t.loopDone)
	ticker := time.NewTicker(t.cfg.FallbackInterval)
	defer ticker.Stop()
	// Start reads every name it is given, so the loop begins in step.
	wasTrusted := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.verifyKick:
			t.verifyReported(ctx)
			continue
		case <-ticker.C:
		}
		trusted := t.pushTrusted()
		if trusted && wasTrusted {
			continue
		}
		// The read after push returns is retried until it reads every
		// name: a failed one could hide the rewind it exists to find.
		if t.poll(ctx) || !trusted {
			wasTrusted = trusted
		}
	}
}

// poll reads every name with an active wait or a known position (a
// group's through its members), within one interval or QueryTimeout,
// whichever is longer. It reports whether every name was read.
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
	if len(names) == 0 {
		return true
	}
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

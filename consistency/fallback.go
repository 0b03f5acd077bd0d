package consistency

import (
	"context"
	"time"
)

// fallbackLoop is the tracker's one background goroutine. While push is not
// trusted it re-reads, every FallbackInterval, the positions of the names
// somebody is waiting on; Advance then wakes those waiters exactly as a push
// would. Polling here, once per name per tick, rather than in each waiter
// keeps the database load independent of how many requests wait.
func (t *Tracker) fallbackLoop(ctx context.Context) {
	defer close(t.loopDone)
	ticker := time.NewTicker(t.cfg.FallbackInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.verifyKick:
			t.verifyReported(ctx)
			continue
		case <-ticker.C:
		}
		if t.pushTrusted() {
			continue
		}
		t.pollWaited(ctx)
	}
}

// pollWaited reads every name with an active wait, within one interval
// or QueryTimeout, whichever is longer.
func (t *Tracker) pollWaited(ctx context.Context) {
	t.mu.Lock()
	var names []string
	for name, cp := range t.names {
		if cp.active > 0 {
			names = append(names, name)
		}
	}
	t.mu.Unlock()
	if len(names) == 0 {
		return
	}
	// At least QueryTimeout: an interval shorter than a busy store takes
	// to answer would make every read run out of time, and the waits
	// would hear nothing until push came back.
	pctx, cancel := context.WithTimeout(ctx, max(t.cfg.FallbackInterval, t.cfg.QueryTimeout))
	defer cancel()
	for _, name := range names {
		if pctx.Err() != nil {
			return
		}
		_ = t.read(pctx, name) // logged; the next poll reads again
	}
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

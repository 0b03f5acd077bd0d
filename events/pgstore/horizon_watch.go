package pgstore

import (
	"sync"
	"time"
)

// horizonWatch times the transaction that holds the read horizon when
// pg_stat_activity hides when it began (a session of another role, and
// this store's role lacks pg_read_all_stats). The current snapshot shows the horizon to
// every role: its xmin is the oldest transaction id still running, and
// equals xmax (one past the newest finished) when none is, or when those
// running all began after the newest finished one: then no commit waits
// behind them, and nothing is held back yet. An xmin that stays put
// across calls while below xmax is one transaction holding the horizon
// all that time.
type horizonWatch struct {
	mu    sync.Mutex
	xmin  int64
	since time.Time
}

// age takes a snapshot's xmin and xmax, read at now, and returns how long
// that xmin has been seen holding the horizon.
func (w *horizonWatch) age(xmin, xmax int64, now time.Time) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if xmin >= xmax {
		// Nothing holds a commit back: an idle cluster keeps its xmin
		// too.
		w.since = time.Time{}
		return 0
	}
	if w.since.IsZero() || xmin != w.xmin {
		w.xmin, w.since = xmin, now
		return 0
	}
	return max(now.Sub(w.since), 0)
}

package pgstore

import (
	"sync"
	"sync/atomic"
	"time"
)

// hotStreamsMax bounds the streams a store remembers as contended; past it
// the oldest marks are dropped. A forgotten stream costs one more lost race
// before it is queued again, never a wrong result.
const hotStreamsMax = 1024

// hotFor is how long a stream stays contended after its last lost race.
const hotFor = 2 * time.Second

// hotStreams remembers streams whose appends recently lost the race for
// the next version, and appends to those queue on a lock (see
// Store.runAppendQueued). Without it, every appender of a stream written
// by many at once reads the same head, one wins, and the rest run again:
// with eight writers on one stream, Append's rate fell to a third of what
// the old head row allowed (each losing statement also left a dead row),
// and AppendTx's to a half. The lock is a transaction-level advisory lock
// taken just before the statement, so Append to a stream that is not
// contended pays nothing for it, and correctness never rests on it: the unique
// index still settles any appender that did not queue. A transaction must
// never queue for the lock on a stream it appended to without it, though:
// once the stream turned hot, another transaction may hold the lock and
// wait at the unique index for that first append's version, and the two
// would deadlock. So AppendTx, which cannot know what its transaction did
// before, always queues and holds the lock until the transaction ends (a
// second appender in a transaction waits for the first one's commit at the
// index anyway); a unit remembers the streams it appended to and queues
// only on its first append to a hot one (see queueing).
type hotStreams struct {
	mu    sync.Mutex
	until map[string]time.Time
	// any is whether until holds a stream: every append asks, and almost
	// always none is contended, so the answer takes no lock.
	any atomic.Bool
	// sweepAt is when has next drops every expired stream, so that marks
	// nobody asks about again do not keep any set.
	sweepAt time.Time
}

// has reports whether streamID lost a race within hotFor.
func (h *hotStreams) has(streamID string, now time.Time) bool {
	if !h.any.Load() {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if now.After(h.sweepAt) {
		for id, t := range h.until {
			if now.After(t) {
				delete(h.until, id)
			}
		}
		h.sweepAt = now.Add(hotFor)
	}
	t, ok := h.until[streamID]
	if ok && now.After(t) {
		delete(h.until, streamID)
		ok = false
	}
	h.any.Store(len(h.until) > 0)
	return ok
}

// mark records a lost race on streamID.
func (h *hotStreams) mark(streamID string, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.until == nil {
		h.until = map[string]time.Time{}
	}
	if _, ok := h.until[streamID]; !ok && len(h.until) >= hotStreamsMax {
		for id, t := range h.until {
			if now.After(t) || len(h.until) >= hotStreamsMax {
				delete(h.until, id)
			}
		}
	}
	h.until[streamID] = now.Add(hotFor)
	h.any.Store(true)
}

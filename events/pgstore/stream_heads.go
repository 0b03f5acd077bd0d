package pgstore

import "sync"

// streamHeadsMax bounds the streams a store remembers the head of; past it
// an arbitrary one is forgotten. A forgotten head costs its next append
// the head look-up, never a wrong result.
const streamHeadsMax = 8192

// streamHeads remembers, per stream, the newest version this store's
// Append committed and that event's sort_key, so that the next Append to
// the stream can skip reading the head (the one look-up an append does
// that a plain INSERT does not: about half of what a one-event append
// costs PostgreSQL beyond the INSERT). Such an append inserts at the
// remembered version + 1, with the sort_key raised to the remembered one.
//
// It is safe because a remembered head can only be behind, never ahead:
// events are never deleted or rewritten, and only committed appends are
// remembered (not those in a caller's transaction or a unit, which may
// roll back). When the head moved on, version + 1 is taken and the unique
// index on (stream_id, version) refuses the insert; Append's statement is
// its own transaction, so it loses nothing, and the append runs again the
// usual way. When the insert succeeds, version + 1 was free, so the
// stream's newest event is the remembered one: versions stay gap-free and
// the raise uses the true predecessor's final sort_key.
//
// That "never ahead" rests on PostgreSQL keeping what it committed. A
// server that can lose committed transactions (synchronous_commit off and
// a crash, or a promoted asynchronous standby) breaks it: a remembered
// head past what survived would be guessed and leave a version gap. So the
// store forgets every head whenever it loses the server: its listen
// connection fails, or an append finds the database unavailable; a store
// that does not listen would not notice a restart, and remembers nothing.
// (Such a server loses events whatever the store does; this keeps the
// versions the store writes afterwards gap-free.)
//
// A wrong guess forgets the head and marks the stream contended (see
// hotStreams), and a contended stream is never guessed: a stream another
// process writes costs one failed statement per contended spell, not one
// per append.
type streamHeads struct {
	mu    sync.Mutex
	heads map[string]streamHead
}

// streamHead is a remembered head.
type streamHead struct {
	version, sortKey int64
}

// guess returns the remembered head of streamID, if there is one.
func (h *streamHeads) guess(streamID string) (streamHead, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.heads[streamID]
	return e, ok
}

// committed remembers that streamID's newest version is version, whose
// sort_key is sortKey.
func (h *streamHeads) committed(streamID string, version, sortKey int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	e, ok := h.heads[streamID]
	if ok && e.version >= version {
		// An older append's reply came last: keep the newer head.
		return
	}
	if !ok {
		h.makeRoom()
	}
	h.heads[streamID] = streamHead{version: version, sortKey: sortKey}
}

// forget drops the head of streamID: a guess found it old.
func (h *streamHeads) forget(streamID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.heads, streamID)
}

// forgetAll drops every head: the store lost the server (a restart or a
// failover), after which what it remembers may be more than the server
// kept.
func (h *streamHeads) forgetAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.heads)
}

// makeRoom forgets a head when the map is full. The caller holds h.mu.
func (h *streamHeads) makeRoom() {
	if h.heads == nil {
		h.heads = map[string]streamHead{}
		return
	}
	for id := range h.heads {
		if len(h.heads) < streamHeadsMax {
			return
		}
		delete(h.heads, id)
	}
}

package pgstore

import "time"

// SetMaxLostRaces sets how often an append of s runs again after losing
// the race for its stream's next version.
func SetMaxLostRaces(s *Store, n int) { s.maxLostRaces = n }

// MarkContended records a lost race on streamID, as an append that lost
// one does.
func MarkContended(s *Store, streamID string) { s.hot.mark(streamID, time.Now()) }

// SetUnqueuedInTx makes s append in a transaction without the stream lock
// unless the stream is contended, as a process of an earlier version did.
func SetUnqueuedInTx(s *Store) { s.unqueuedInTx = true }

// RememberedHead returns the head s remembers for streamID: the version
// and sort key its next Append there guesses, if any.
func RememberedHead(s *Store, streamID string) (version, sortKey int64, ok bool) {
	h, ok := s.heads.guess(streamID)
	return h.version, h.sortKey, ok
}

// Contended reports whether s counts streamID as contended: its appends
// queue on the stream's lock and do not guess its head.
func Contended(s *Store, streamID string) bool { return s.hot.has(streamID, time.Now()) }

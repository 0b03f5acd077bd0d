package pgstore

import (
	"errors"
	"sync"
	"time"
)

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

// BacklogFault is a failure injected into the listen connection's backlog
// step by FailListenBacklog.
type BacklogFault struct {
	// Failed is closed when the part failed.
	Failed <-chan struct{}
	// Retried is closed when the step runs again after the failure (its
	// first part is about to run).
	Retried <-chan struct{}
	// HealthyWhenFailed is PushHealthy at the failure: read it after Failed.
	HealthyWhenFailed bool
}

// FailListenBacklog makes part ("announce", the re-announce query after a
// reconnect; or "hello") of s's next listen backlog step fail once.
func FailListenBacklog(s *Store, part string) *BacklogFault {
	failed, retried := make(chan struct{}), make(chan struct{})
	f := &BacklogFault{Failed: failed, Retried: retried}
	var mu sync.Mutex
	done := false
	hook := func(p string) error {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case done:
			s.listenFault.Store(nil)
			close(retried)
			return nil
		case p == part:
			done = true
			f.HealthyWhenFailed = s.PushHealthy()
			close(failed)
			return errors.New("injected failure of the listen backlog step's " + part)
		}
		return nil
	}
	s.listenFault.Store(&hook)
	return f
}

package memstore

import (
	"context"
	"sort"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// read serves ReadAll and ReadFeed. It sees committed events before the
// first seq an open unit reserved: like PostgreSQL's read horizon, that
// keeps a reader from passing an event that may still commit.
//
// pendingBehind: a read held back that returned no events reports Pending
// whenever a committed event after the cursor sits at or past the
// reservation, whether it matches the filter or not, as pgstore does. A
// filtered reader moves its checkpoint past unmatched events
// (Batch.ScannedTo), so unmatched events it cannot read yet are pending
// for it too: without them it would see nothing pending and wait for a
// wake-up that the unit holding the horizon may never send. A read that
// returned events reports Pending when a matching event waits behind the
// reservation (pgstore leaves it false; its reader reads again anyway).
func (s *Store) read(ctx context.Context, after events.Token, f feed.Filter, limit int) (feed.Batch, error) {
	invalid := f.Validate()
	if invalid == nil {
		invalid = feed.ValidateToken(after)
	}
	if err := s.checkInput(ctx, invalid); err != nil {
		return feed.Batch{}, err
	}
	if limit <= 0 {
		limit = events.DefaultReadLimit
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	b, _ := s.readLocked(after, f, limit)
	return b, nil
}

// readLocked reads the feed and counts the events it examined, which tests
// hold against the events it returned. The caller holds s.mu.
func (s *Store) readLocked(after events.Token, f feed.Filter, limit int) (feed.Batch, int) {
	bound, held := s.horizonLocked()
	// Tokens only grow along the log, so the first event after the token is
	// found by binary search. Any token works, including ones minted by
	// another store.
	start := sort.Search(len(s.log), func(i int) bool { return s.log[i].Token.After(after) })
	if cands, ok := s.index.candidates(f, after); ok {
		return s.readIndexed(cands, start, bound, held, f, limit)
	}
	return s.scan(start, bound, held, f, limit)
}

// scan reads the log itself from start, for a filter without types or
// categories: it matches most events, so the read soon reaches its limit.
func (s *Store) scan(start int, bound events.Token, held bool, f feed.Filter, limit int) (feed.Batch, int) {
	b := feed.Batch{Events: []events.Envelope{}}
	examined := 0
	for _, env := range s.log[start:] {
		examined++
		if held && !env.Token.Before(bound) {
			// Committed but behind an open unit's reservation: pending
			// for a read that returned nothing, matching or not (see
			// pendingBehind), and for any read when it matches.
			if len(b.Events) == 0 || f.Match(*env) {
				b.Pending = true
				break
			}
			continue
		}
		b.ScannedTo = env.Token
		if f.Match(*env) {
			b.Events = append(b.Events, cloneEnvelope(*env))
			if len(b.Events) == limit {
				break
			}
		}
	}
	return b, examined
}

// readIndexed reads the candidates only, and answers as scan would: the
// events of the log it skips cannot match.
func (s *Store) readIndexed(cands *merge, start int, bound events.Token, held bool, f feed.Filter, limit int) (feed.Batch, int) {
	// Sized once: grown by appends, the batch's envelopes were copied and
	// allocated about twice over.
	b := feed.Batch{Events: make([]events.Envelope, 0, min(limit, cands.readable(bound, held)))}
	examined := 0
	// Every candidate left is at or after pos in the log.
	pos := start
	for {
		seq, ok := cands.peek()
		if !ok || held && !seqToken(seq).Before(bound) {
			break
		}
		cands.next()
		examined++
		pos = s.locate(seq, pos)
		if env := s.log[pos]; f.Match(*env) {
			b.Events = append(b.Events, cloneEnvelope(*env))
			if len(b.Events) == limit {
				b.ScannedTo = env.Token
				return b, examined
			}
		}
		pos++
	}
	// Short of its limit, the read looked at every readable event.
	end := len(s.log)
	if held {
		end = start + sort.Search(len(s.log)-start, func(i int) bool { return !s.log[start+i].Token.Before(bound) })
	}
	if end > start {
		b.ScannedTo = s.log[end-1].Token
	}
	if !held {
		return b, examined
	}
	if len(b.Events) == 0 {
		// Nothing returned: any committed event behind the reservation is
		// pending, matching or not (see pendingBehind).
		b.Pending = end < len(s.log)
		return b, examined
	}
	// Held back after returning events: is one of the candidates behind
	// the reservation a match?
	for seq, ok := cands.next(); ok; seq, ok = cands.next() {
		examined++
		pos = s.locate(seq, pos)
		if f.Match(*s.log[pos]) {
			b.Pending = true
			break
		}
		pos++
	}
	return b, examined
}

// locate returns the log position of the committed event with seq, which
// is at or after lo. The caller holds s.mu.
func (s *Store) locate(seq uint64, lo int) int {
	hi := len(s.log)
	// Seqs grow by at least one a position, so seq is at most its distance
	// from lo's seq past lo: without rolled-back seqs, exactly there.
	if lo < hi {
		if first := s.log[lo].Token.Major(); first <= seq && seq-first < uint64(hi-lo) {
			hi = lo + int(seq-first) + 1
		}
	}
	return lo + sort.Search(hi-lo, func(i int) bool { return s.log[lo+i].Token.Major() >= seq })
}

// horizonLocked returns the first token an open unit reserved, and whether
// there is one. The caller holds s.mu.
func (s *Store) horizonLocked() (events.Token, bool) {
	var first uint64
	for u := range s.open {
		if first == 0 || u.firstSeq < first {
			first = u.firstSeq
		}
	}
	return seqToken(first), first != 0
}

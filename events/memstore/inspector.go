package memstore

import (
	"context"
	"sort"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// CountBetween counts the events after `after` up to and including upTo.
// Unlike PostgreSQL's it is not capped: counting costs nothing in memory.
func (s *Store) CountBetween(ctx context.Context, after, upTo events.Token) (int64, error) {
	invalid := feed.ValidateToken(after)
	if invalid == nil {
		invalid = feed.ValidateToken(upTo)
	}
	if err := s.checkInput(ctx, invalid); err != nil {
		return 0, err
	}
	if !after.Before(upTo) {
		return 0, nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	from := sort.Search(len(s.log), func(i int) bool { return s.log[i].Token.After(after) })
	to := sort.Search(len(s.log), func(i int) bool { return s.log[i].Token.After(upTo) })
	return int64(to - from), nil
}

// OldestAfter returns when the first event after `after` was recorded, and
// false when there is none.
func (s *Store) OldestAfter(ctx context.Context, after events.Token) (time.Time, bool, error) {
	if err := s.checkInput(ctx, feed.ValidateToken(after)); err != nil {
		return time.Time{}, false, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	i := sort.Search(len(s.log), func(i int) bool { return s.log[i].Token.After(after) })
	if i == len(s.log) {
		return time.Time{}, false, nil
	}
	return s.log[i].RecordedAt, true, nil
}

// Consumers lists every consumer name with its position and lease, sorted
// by name. LeaseUntil is the zero time when nobody holds a name.
func (s *Store) Consumers(ctx context.Context) ([]feed.ConsumerInfo, error) {
	return s.checkpoints.consumers(ctx)
}

// HorizonAge returns how long the oldest open unit that appended has held
// its reserved tokens: while it does, no later event can be read, as with
// an open transaction on PostgreSQL. Zero when none does.
func (s *Store) HorizonAge(ctx context.Context) (time.Duration, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var oldest time.Time
	for u := range s.open {
		if oldest.IsZero() || u.reservedAt.Before(oldest) {
			oldest = u.reservedAt
		}
	}
	if oldest.IsZero() {
		return 0, nil
	}
	return max(s.cfg.Clock.Now().Sub(oldest), 0), nil
}

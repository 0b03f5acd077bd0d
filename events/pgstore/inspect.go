package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// OldestScan bounds the events after a position OldestAfter looks at, in
// feed order, so a far-behind consumer costs a bounded scan per lag pass.
const OldestScan = 10_000

// OldestAfter returns when the oldest of the events after `after` was
// recorded, among the first OldestScan of them in feed order. The first is
// not always the oldest: feed order is the order of the appending
// transactions' ids, and a transaction that took its id early (it wrote
// its own tables first) and appended late puts a young event before older
// ones committed meanwhile; timing the lag from it would hide how long
// those have waited, and a breach with it. It looks past the read horizon
// on purpose: an event held back by an open transaction is unprocessed
// too, and its wait counts as lag.
func (s *Store) OldestAfter(ctx context.Context, after events.Token) (time.Time, bool, error) {
	if s.isClosed() {
		return time.Time{}, false, errClosed
	}
	major, minor, err := tokenArgs(after)
	if err != nil {
		return time.Time{}, false, err
	}
	var at *time.Time // NULL when no event follows
	if err := s.pool.QueryRow(ctx, s.q.oldestAfter, major, minor, OldestScan).Scan(&at); err != nil {
		return time.Time{}, false, fmt.Errorf("pgstore: oldest unprocessed event: %w", classify(err))
	}
	if at == nil {
		return time.Time{}, false, nil
	}
	return *at, true, nil
}

// Consumers lists every consumer name with its position and lease.
func (s *Store) Consumers(ctx context.Context) ([]feed.ConsumerInfo, error) {
	if s.isClosed() {
		return nil, errClosed
	}
	rows, err := s.pool.Query(ctx, s.q.consumers)
	if err != nil {
		return nil, fmt.Errorf("pgstore: list consumers: %w", classify(err))
	}
	defer rows.Close()
	var out []feed.ConsumerInfo
	for rows.Next() {
		var (
			c                     feed.ConsumerInfo
			major, minor          int64
			leaseUntil, heartbeat *time.Time
		)
		if err := rows.Scan(&c.Name, &major, &minor, &c.Owner, &c.Generation, &leaseUntil, &heartbeat, &c.UpdatedAt); err != nil {
			return nil, fmt.Errorf("pgstore: list consumers: %w", classify(err))
		}
		// NULL (nobody holds the name, never renewed) is Go's zero time, as
		// in memory.
		if leaseUntil != nil {
			c.LeaseUntil = *leaseUntil
		}
		if heartbeat != nil {
			c.HeartbeatAt = *heartbeat
		}
		c.Position = events.MakeToken(uint64(major), uint64(minor))
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: list consumers: %w", classify(err))
	}
	return out, nil
}

var _ feed.Inspector = (*Store)(nil)

package memstore

import (
	"context"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// ReadFeed returns up to limit events strictly after the token in global
// order that match f, and how far it looked (Batch.ScannedTo). limit <= 0
// means events.DefaultReadLimit. Events committed behind an open unit's
// reserved tokens are held back until the unit ends, and Batch.Pending
// reports them to a read that returned no events, whether they match f or
// not.
func (s *Store) ReadFeed(ctx context.Context, after events.Token, f feed.Filter, limit int) (feed.Batch, error) {
	return s.read(ctx, after, f, limit)
}

// Wake returns a channel closed by the next append, unit end or Close. Take
// it before reading the feed, so an append in between is not missed.
func (s *Store) Wake() <-chan struct{} { return s.wake.C() }

// PushHealthy is always true: every append notifies Wake in-process.
func (s *Store) PushHealthy() bool { return true }

// Checkpoints returns the store's checkpoint store. It shares the store's
// Clock and is closed with it.
func (s *Store) Checkpoints() feed.CheckpointStore { return s.checkpoints }

// Rows returns the store's rows outside any unit: reads see committed
// rows, and each write commits by itself.
func (s *Store) Rows() feed.Rows { return &rows{s: s} }

// WatchCheckpoints calls fn after every committed checkpoint move until
// cancel is called. fn runs on the committing goroutine and must not block.
func (s *Store) WatchCheckpoints(fn func(name string, pos events.Token)) (cancel func()) {
	return s.checkpoints.watch(fn)
}

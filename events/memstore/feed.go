package memstore

import (
	"context"
	"strings"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// ReadFeed returns up to limit events strictly after the token in global
// order, keeping only streams in category when it is not empty. limit <= 0
// means events.DefaultReadLimit. Batch.Pending is always false: an append is
// readable the moment it returns, so nothing is ever held back.
func (s *Store) ReadFeed(ctx context.Context, after events.Token, category string, limit int) (feed.Batch, error) {
	evs, err := s.read(ctx, after, category, limit)
	if err != nil {
		return feed.Batch{}, err
	}
	return feed.Batch{Events: evs}, nil
}

// Wake returns a channel closed by the next append (or by Close). Take it
// before reading the feed, so an append in between is not missed.
func (s *Store) Wake() <-chan struct{} { return s.wake.C() }

// PushHealthy is always true: every append notifies Wake in-process.
func (s *Store) PushHealthy() bool { return true }

// Checkpoints returns the store's checkpoint store. It shares the store's
// Clock and is closed with it.
func (s *Store) Checkpoints() feed.CheckpointStore { return s.checkpoints }

// WatchCheckpoints calls fn after every committed checkpoint move until
// cancel is called. fn runs on the committing goroutine and must not block.
func (s *Store) WatchCheckpoints(fn func(name string, pos events.Token)) (cancel func()) {
	return s.checkpoints.watch(fn)
}

// inCategory reports whether streamID belongs to category: it is the
// category itself or starts with category + "-". Plain string comparison,
// so "order" never matches "orders-1" and no character is a wildcard.
func inCategory(streamID, category string) bool {
	rest, ok := strings.CutPrefix(streamID, category)
	return ok && (rest == "" || rest[0] == '-')
}

package memstore

import (
	"context"

	"github.com/converge-es/converge/events/feed"
)

var _ feed.MembershipWatcher = (*Store)(nil)

// AnnounceGroup implements feed.MembershipWatcher: the store's watchers
// hear of it before it returns.
func (s *Store) AnnounceGroup(_ context.Context, group string) {
	s.groups.Fire(group)
}

// WatchMembership implements feed.MembershipWatcher.
func (s *Store) WatchMembership(fn func(group string)) (cancel func()) {
	return s.groups.Add(fn)
}

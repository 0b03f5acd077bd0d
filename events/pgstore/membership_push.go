package pgstore

import (
	"context"
	"strings"
)

// AnnounceGroup implements feed.MembershipWatcher. This process's watchers
// hear of it at once; other processes' by a NOTIFY sent right away, not
// through the notifier, which holds payloads back while nobody else
// listens and drops what is queued at Close: announcements are rare, and a
// process's last one, its leave, comes as it shuts down.
func (s *Store) AnnounceGroup(ctx context.Context, group string) {
	s.groups.Fire(group)
	if s.isClosed() {
		return
	}
	if _, err := s.pool.Exec(ctx, s.q.notify, NotifyChannel, s.groupPayload(group)); err != nil && ctx.Err() == nil {
		s.cfg.Logger.Debug("pgstore: membership announcement not sent; the group's other processes learn of the change at their next heartbeat",
			"group", group, "error", err)
	}
}

// WatchMembership implements feed.MembershipWatcher.
func (s *Store) WatchMembership(fn func(group string)) (cancel func()) {
	return s.groups.Add(fn)
}

// groupPayload is "m:<schema>:<instance>:<group>"; the group comes last
// because it may contain colons.
func (s *Store) groupPayload(group string) string {
	return "m:" + s.cfg.Schema + ":" + s.instance + ":" + group
}

// heardGroup handles the rest of an "m:" payload: another store's
// announcement for this schema reaches this process's watchers. A store's
// own echo is ignored; its watchers heard at once.
func (s *Store) heardGroup(rest string) {
	parts := strings.SplitN(rest, ":", 3)
	if len(parts) != 3 || parts[0] != s.cfg.Schema || parts[1] == s.instance {
		return
	}
	s.groups.Fire(parts[2])
}

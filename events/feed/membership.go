package feed

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/internal/signal"
)

// membership keeps this process in a processor's group and tells each
// partition whether this process should hold it.
//
// Membership is a row per live process with an expiry, renewed by
// heartbeat, not a session advisory lock: a lock held by a connection
// outlives a frozen process and vanishes with a pooled connection's
// reconnect, while a row expires on a clock everyone reads. Assignment is a
// pure function of the sorted member list (partition i goes to member
// i mod n), so every process computes the same split without talking to the
// others, and the leases with their generations (epochs) fence the moments
// when two processes briefly disagree: a partition is only ever delivered
// under its lease, and a commit under a superseded lease is refused.
type membership struct {
	cps    CheckpointStore
	group  string
	member string
	ttl    time.Duration
	every  time.Duration
	log    *slog.Logger
	// watch, when the source pushes membership changes, announces this
	// member's joins and leaves and wakes its heartbeat at others'.
	watch MembershipWatcher

	mu      sync.Mutex
	members []string
	known   bool
	changed signal.Broadcast
}

// run heartbeats until ctx ends, then leaves the group so the others take
// over at their next heartbeat (at once where the source announces it),
// not when this member's row expires.
func (m *membership) run(ctx context.Context) {
	// poke wakes the heartbeat when another member announced a change of
	// the group; announcements during a heartbeat collapse into one more.
	poke := make(chan struct{}, 1)
	if m.watch != nil {
		cancel := m.watch.WatchMembership(func(group string) {
			if group == m.group {
				select {
				case poke <- struct{}{}:
				default:
				}
			}
		})
		defer cancel()
	}
	failing, joined, poked := false, false, false
	for {
		// Not cancelled with ctx: a heartbeat abandoned mid-flight can
		// still land on the server after leave's delete and bring this
		// member back for a whole TTL, holding half the partitions of a
		// group it has left. Waiting for it (at most a TTL, as leave
		// waits) orders the two.
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.ttl)
		members, err := m.cps.Heartbeat(hctx, m.group, m.member, m.ttl)
		cancel()
		switch {
		case ctx.Err() != nil:
			m.leave(ctx)
			return
		case errors.Is(err, events.ErrClosed):
			return
		case err != nil:
			if !failing {
				m.log.Warn("feed: membership heartbeat failed; keeping the last known members", "error", err)
				failing = true
			}
		default:
			// After failures this member may have expired and come back:
			// that is a join too.
			announce := !joined || failing
			if failing {
				m.log.Info("feed: membership heartbeat recovered")
				failing = false
			}
			joined = true
			// A poke may mean a member gave a partition up without the
			// members changing: wake the standing-by partitions anyway.
			m.set(members, poked)
			if announce {
				m.announce(ctx)
			}
		}
		poked = false
		t := time.NewTimer(m.every)
		select {
		case <-ctx.Done():
			t.Stop()
			m.leave(ctx)
			return
		case <-t.C:
		case <-poke:
			t.Stop()
			poked = true
		}
	}
}

func (m *membership) leave(ctx context.Context) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.ttl)
	defer cancel()
	if err := m.cps.Leave(lctx, m.group, m.member); err != nil && !errors.Is(err, events.ErrClosed) {
		m.log.Warn("feed: leaving the membership group failed; the others take over when this member expires", "error", err, "ttl", m.ttl)
	} else if err == nil && m.watch != nil {
		m.watch.AnnounceGroup(lctx, m.group)
	}
	m.set(nil, false)
}

// announce tells the group's other members that it changed, when the
// source can: this member joined, or gave a partition up. Bounded like a
// heartbeat, and not cancelled with ctx: the heartbeat loop must not wait
// on a busy pool for longer than a TTL, and a release at shutdown is
// announced as the process goes.
func (m *membership) announce(ctx context.Context) {
	if m.watch == nil {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.ttl)
	defer cancel()
	m.watch.AnnounceGroup(actx, m.group)
}

// set records the members seen and wakes the partitions when they
// changed, or always when force is set.
func (m *membership) set(members []string, force bool) {
	members = slices.Clone(members)
	slices.Sort(members)
	m.mu.Lock()
	same := m.known && slices.Equal(m.members, members)
	m.members, m.known = members, members != nil
	m.mu.Unlock()
	if !same {
		m.log.Debug("feed: membership changed", "members", members)
	}
	if !same || force {
		m.changed.Notify()
	}
}

// owns reports whether this member should hold partition index of count,
// and a channel closed at the next membership change. Before the first
// heartbeat answers nobody is known and nothing is owned.
func (m *membership) owns(index, count int) (bool, <-chan struct{}) {
	ch := m.changed.C()
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.members) == 0 {
		return false, ch
	}
	return m.members[index%len(m.members)] == m.member, ch
}

// snapshot returns the members last seen.
func (m *membership) snapshot() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.members)
}

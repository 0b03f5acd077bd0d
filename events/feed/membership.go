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
	// rows, when set, holds what each member handles (handles is this
	// member's): partitions go only to the members that handle everything
	// any live member does (see eligible).
	rows    Rows
	handles []string

	mu      sync.Mutex
	members []string
	// assign are the members the partitions are split among: the eligible
	// ones, or every member without rows.
	assign  []string
	known   bool
	changed signal.Broadcast
	// standing is what the last line about standing by said, so it is
	// logged once per change.
	standing string
	// mixed is set when the last read of what the members handle found a
	// live member that handles otherwise than this one (another build).
	mixed bool
	// split is set while assign comes from a successful read of what the
	// members handle (or there are no rows): not a stand-by for want of it.
	split bool
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
	lastOK := time.Now()
	var lastAssign, lastMembers []string
	readFailing := false // said once per run of failed reads of the rows
	for {
		if m.rows != nil {
			rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), m.ttl)
			if err := m.recordHandles(rctx); err != nil && ctx.Err() == nil && !errors.Is(err, events.ErrClosed) {
				m.log.Warn("feed: recording what this member handles failed; the members of the processor stand by until it is recorded", "error", err)
			}
			rcancel()
		}
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
			m.set(nil, nil, false)
			return
		case err != nil:
			if !failing {
				m.log.Warn("feed: membership heartbeat failed; keeping the last known members", "error", err)
				failing = true
			}
			if time.Since(lastOK) >= m.ttl {
				// This member's row has expired for the others: it holds
				// nothing until its heartbeat brings it back, and has not
				// taken anything over meanwhile (AwaitTakeover).
				m.mu.Lock()
				m.split = false
				m.mu.Unlock()
				m.set([]string{}, []string{}, false)
			}
		default:
			// After failures this member may have expired and come back:
			// that is a join too.
			lastOK = time.Now()
			announce := !joined || failing
			if failing {
				m.log.Info("feed: membership heartbeat recovered")
				failing = false
			}
			joined = true
			assign := members
			if m.rows != nil {
				rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), m.ttl)
				el, mixed, err := m.eligible(rctx, members)
				rcancel()
				if err == nil && readFailing {
					m.log.Info("feed: reading what the members handle recovered")
				}
				warn := err != nil && !readFailing
				readFailing = err != nil
				switch {
				case err == nil:
					assign = el
					lastMembers = slices.Clone(members)
					m.mu.Lock()
					m.mixed, m.split = mixed, true
					m.mu.Unlock()
				case lastAssign != nil && !slices.ContainsFunc(members, func(x string) bool { return !slices.Contains(lastMembers, x) }):
					// Kept, as the last known members are when a heartbeat
					// fails: every member reads the same rows, so a member
					// that guessed otherwise could take what another holds.
					if warn {
						m.log.Warn("feed: reading what the members handle failed; keeping the last known split while no member joins", "error", err)
					}
					assign = slices.DeleteFunc(slices.Clone(lastAssign), func(x string) bool { return !slices.Contains(members, x) })
				default:
					// Nothing known yet, or a member joined since, whose
					// handles are unknown: it may handle what this one
					// does not.
					if warn || len(lastAssign) > 0 {
						m.log.Warn("feed: reading what the members handle failed; standing by until it can be read", "error", err)
					}
					assign = []string{}
					m.mu.Lock()
					m.split = false
					m.mu.Unlock()
				}
			}
			lastAssign = assign
			// A poke may mean a member gave a partition up without the
			// members changing: wake the standing-by partitions anyway.
			m.set(members, assign, poked)
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
	if m.rows != nil {
		_ = m.rows.Delete(lctx, RuntimeNamespace, MembersHandleTable, m.handlesKey(m.member))
	}
	m.set(nil, nil, false)
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

// set records the members seen and those the partitions are split among
// (assign, nil for all of them), and wakes the partitions when either
// changed, or always when force is set.
func (m *membership) set(members, assign []string, force bool) {
	members = slices.Clone(members)
	slices.Sort(members)
	if assign == nil {
		assign = members
	}
	assign = slices.Clone(assign)
	slices.Sort(assign)
	m.mu.Lock()
	same := m.known && slices.Equal(m.members, members) && slices.Equal(m.assign, assign)
	m.members, m.assign, m.known = members, assign, members != nil
	m.mu.Unlock()
	if !same {
		m.log.Debug("feed: membership changed", "members", members, "assigned", assign)
		m.logStanding(members, assign)
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
	if len(m.assign) == 0 {
		return false, ch
	}
	return m.assign[index%len(m.assign)] == m.member, ch
}

// logStanding says, once per change, why this live member takes no
// partition although it could: others handle what it does not.
func (m *membership) logStanding(members, assign []string) {
	why := ""
	switch {
	case !slices.Contains(members, m.member) || slices.Contains(assign, m.member):
	case len(assign) == 0:
		why = "no live member handles everything the others do (builds with different handlers run side by side): the processor delivers nothing until the members of one build are gone"
	default:
		why = "other live members handle what this one does not (a newer build beside this one?): this member stands by until they are gone"
	}
	m.mu.Lock()
	changed := why != m.standing
	m.standing = why
	m.mu.Unlock()
	if changed && why != "" {
		m.log.Warn("feed: "+why, "member", m.member, "members", members, "assigned", assign)
	}
}

// snapshot returns the members last seen and those assigned partitions.
func (m *membership) snapshot() (members, assigned []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.members), slices.Clone(m.assign)
}

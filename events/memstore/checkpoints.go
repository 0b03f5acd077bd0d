package memstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/signal"
)

// checkpointStore is the in-memory feed.CheckpointStore: one position per
// consumer name, guarded by a lease with a fencing generation.
type checkpointStore struct {
	store  *Store
	clock  events.Clock
	closed *atomic.Bool

	mu    sync.Mutex
	names map[string]*checkpoint
	// groups holds each membership group's members and when they expire.
	groups map[string]map[string]time.Time

	watchers signal.Watchers[checkpointMove]
}

// checkpoint is one consumer name's row.
type checkpoint struct {
	pos events.Token
	// owner is empty when nobody holds the lease (never taken, or released).
	owner string
	// generation grows every time the lease changes hands, so a consumer
	// that lost its lease cannot commit over its successor.
	generation int64
	leaseUntil time.Time
	// heartbeatAt is the holder's last acquire, renewal or commit.
	heartbeatAt time.Time
	// updatedAt is when pos last moved (or the row was created).
	updatedAt time.Time
}

func newCheckpointStore(s *Store, clock events.Clock, closed *atomic.Bool) *checkpointStore {
	return &checkpointStore{
		store:  s,
		groups: map[string]map[string]time.Time{},
		clock:  clock,
		closed: closed,
		names:  map[string]*checkpoint{},
	}
}

func (c *checkpointStore) check(ctx context.Context) error {
	return c.checkInput(ctx, nil)
}

// checkInput is check for a call whose input validated to invalid (nil
// when good): bad input is reported before a done context, as on
// PostgreSQL, which refuses it before any SQL runs.
func (c *checkpointStore) checkInput(ctx context.Context, invalid error) error {
	if c.closed.Load() {
		return errClosed
	}
	if invalid != nil {
		return invalid
	}
	return ctx.Err()
}

// Acquire takes the lease on name for owner, with a new generation every
// time (see feed.CheckpointStore.Acquire).
func (c *checkpointStore) Acquire(ctx context.Context, name, owner string, ttl time.Duration) (feed.Lease, error) {
	if err := c.checkInput(ctx, feed.ValidateLease(name, owner, ttl)); err != nil {
		return feed.Lease{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	cp := c.names[name]
	if cp == nil {
		cp = &checkpoint{updatedAt: now}
		c.names[name] = cp
	}
	// A lease is live up to and including leaseUntil, as on PostgreSQL
	// (lease_until < now() means expired).
	if cp.owner != owner && cp.owner != "" && !now.After(cp.leaseUntil) {
		return feed.Lease{}, fmt.Errorf("%w: %q is held by %q for another %s (stop the other consumer, or wait for its lease to expire)",
			feed.ErrLeaseHeld, name, cp.owner, cp.leaseUntil.Sub(now).Round(time.Millisecond))
	}
	// A new generation even for the holder's own owner string: whoever
	// acquired before under it is fenced off, so two callers sharing an
	// owner never both commit.
	cp.owner = owner
	cp.generation++
	cp.leaseUntil = now.Add(ttl)
	cp.heartbeatAt = now
	return feed.Lease{Name: name, Owner: owner, Generation: cp.generation, Position: cp.pos}, nil
}

// current returns l.Name's checkpoint if l is still its lease, or an error
// wrapping feed.ErrLeaseLost. Expiry alone does not end a lease: only a
// takeover or a Release does. The caller holds c.mu.
func (c *checkpointStore) current(l feed.Lease) (*checkpoint, error) {
	cp := c.names[l.Name]
	if !holds(cp, l) {
		return nil, fmt.Errorf("%w: %q generation %d of owner %q is no longer current (stop delivering; Acquire again to resume)",
			feed.ErrLeaseLost, l.Name, l.Generation, l.Owner)
	}
	return cp, nil
}

// holds reports whether l is cp's current lease.
func holds(cp *checkpoint, l feed.Lease) bool {
	return cp != nil && cp.owner == l.Owner && cp.generation == l.Generation
}

// Renew extends l. An expired lease that nobody took over renews fine.
func (c *checkpointStore) Renew(ctx context.Context, l feed.Lease, ttl time.Duration) error {
	if err := c.checkInput(ctx, feed.ValidateLease(l.Name, l.Owner, ttl)); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cp, err := c.current(l)
	if err != nil {
		return err
	}
	now := c.clock.Now()
	cp.leaseUntil = now.Add(ttl)
	cp.heartbeatAt = now
	return nil
}

// Release gives l up. Releasing a lease that was already lost is a no-op.
func (c *checkpointStore) Release(ctx context.Context, l feed.Lease) error {
	if err := c.checkInput(ctx, feed.ValidateLeaseHolder(l)); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cp := c.names[l.Name]
	if !holds(cp, l) {
		return nil // someone else holds it now: nothing left to give up
	}
	// Clearing the owner makes the next Acquire, by anyone, a takeover with
	// a new generation, so l can no longer commit.
	cp.owner = ""
	cp.leaseUntil = time.Time{}
	return nil
}

// Position returns name's stored position, or the zero token.
func (c *checkpointStore) Position(ctx context.Context, name string) (events.Token, error) {
	if err := c.checkInput(ctx, feed.ValidateConsumerNames(name)); err != nil {
		return events.Token{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cp := c.names[name]; cp != nil {
		return cp.pos, nil
	}
	return events.Token{}, nil
}

// Begin starts a unit of work.
func (c *checkpointStore) Begin(ctx context.Context) (feed.Unit, error) {
	if err := c.check(ctx); err != nil {
		return nil, err
	}
	return c.store.newUnit(), nil
}

// Advance moves l's checkpoint forward to pos, never back.
func (c *checkpointStore) Advance(ctx context.Context, l feed.Lease, pos events.Token) error {
	invalid := feed.ValidateLeaseHolder(l)
	if invalid == nil {
		invalid = feed.ValidateToken(pos)
	}
	if err := c.checkInput(ctx, invalid); err != nil {
		return err
	}
	c.mu.Lock()
	cp, err := c.current(l)
	moved := false
	if err == nil {
		now := c.clock.Now()
		cp.heartbeatAt = now
		if pos.After(cp.pos) {
			cp.pos = pos
			cp.updatedAt = now
			moved = true
		}
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if moved {
		c.notify(l.Name, pos)
	}
	return nil
}

// Heartbeat records member as live in group until ttl from now and returns
// the live members, sorted. A member is live up to and including its
// expiry, like a lease.
func (c *checkpointStore) Heartbeat(ctx context.Context, group, member string, ttl time.Duration) ([]string, error) {
	if err := c.checkInput(ctx, feed.ValidateMember(group, member, ttl)); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	g := c.groups[group]
	if g == nil {
		g = map[string]time.Time{}
		c.groups[group] = g
	}
	g[member] = now.Add(ttl)
	out := make([]string, 0, len(g))
	for m, until := range g {
		if now.After(until) {
			delete(g, m)
			continue
		}
		out = append(out, m)
	}
	slices.Sort(out)
	return out, nil
}

// Leave removes member from group.
func (c *checkpointStore) Leave(ctx context.Context, group, member string) error {
	if err := c.checkInput(ctx, feed.ValidateMemberNames(group, member)); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.groups[group], member)
	if len(c.groups[group]) == 0 {
		delete(c.groups, group) // a long run sees many groups come and go
	}
	return nil
}

// checkpointMove is what a checkpoint watcher is told.
type checkpointMove struct {
	name string
	pos  events.Token
}

// watch registers fn until the returned func is called.
func (c *checkpointStore) watch(fn func(string, events.Token)) (cancel func()) {
	return c.watchers.Add(func(m checkpointMove) { fn(m.name, m.pos) })
}

// notify calls the watchers outside any lock, so a watcher may call back
// into the store.
func (c *checkpointStore) notify(name string, pos events.Token) {
	c.watchers.Fire(checkpointMove{name, pos})
}

// consumers lists every name with its position and lease, sorted by name.
func (c *checkpointStore) consumers(ctx context.Context) ([]feed.ConsumerInfo, error) {
	if err := c.check(ctx); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	out := make([]feed.ConsumerInfo, 0, len(c.names))
	for name, cp := range c.names {
		// A lapsed lease is held by nobody (Acquire's test, by the same
		// clock).
		owner := cp.owner
		if now.After(cp.leaseUntil) {
			owner = ""
		}
		out = append(out, feed.ConsumerInfo{
			Name:        name,
			Position:    cp.pos,
			Owner:       owner,
			Generation:  cp.generation,
			LeaseUntil:  cp.leaseUntil,
			HeartbeatAt: cp.heartbeatAt,
			UpdatedAt:   cp.updatedAt,
		})
	}
	slices.SortFunc(out, func(a, b feed.ConsumerInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

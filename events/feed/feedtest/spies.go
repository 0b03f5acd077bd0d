package feedtest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// pendingSource reports Batch.Pending, with no events, for its first
// `pending` reads, as PostgreSQL does while an older transaction holds
// committed events back.
type pendingSource struct {
	feed.Source
	pending atomic.Int64
	reads   atomic.Int64
}

func (s *pendingSource) ReadFeed(ctx context.Context, after events.Token, f feed.Filter, limit int) (feed.Batch, error) {
	s.reads.Add(1)
	if s.pending.Add(-1) >= 0 {
		return feed.Batch{Pending: true}, nil
	}
	return s.Source.ReadFeed(ctx, after, f, limit)
}

// silentSource never wakes its readers, like a source whose notifications
// are lost; healthy is what PushHealthy reports.
type silentSource struct {
	feed.Source
	healthy bool
	// idle, when set, counts the reads that found nothing and nothing
	// pending: after one, the consumer waits for a wake-up or a poll.
	idle *atomic.Int64
}

func (s silentSource) ReadFeed(ctx context.Context, after events.Token, f feed.Filter, limit int) (feed.Batch, error) {
	b, err := s.Source.ReadFeed(ctx, after, f, limit)
	if err == nil && s.idle != nil && len(b.Events) == 0 && !b.Pending {
		s.idle.Add(1)
	}
	return b, err
}

// Wake returns a nil channel, which never fires.
func (s silentSource) Wake() <-chan struct{} { return nil }

func (s silentSource) PushHealthy() bool { return s.healthy }

// spySource wraps a source's checkpoint store in a spyCheckpoints.
type spySource struct {
	feed.Source
	cps *spyCheckpoints
}

func newSpySource(src feed.Source) *spySource {
	return &spySource{Source: src, cps: &spyCheckpoints{CheckpointStore: src.Checkpoints()}}
}

func (s *spySource) Checkpoints() feed.CheckpointStore { return s.cps }

// spyCheckpoints counts open units and refused acquisitions, and can stop
// renewing leases while pretending to renew them (a paused process).
type spyCheckpoints struct {
	feed.CheckpointStore
	open        atomic.Int64
	begun       atomic.Int64
	advances    atomic.Int64
	held        atomic.Int64
	pauseRenews atomic.Bool
	// unreachable makes Acquire and Renew fail as if the database were
	// down.
	unreachable atomic.Bool
	// confirmed is when the latest Acquire or Renew that succeeded was
	// called (unix nanoseconds): the lease is known good from then on.
	confirmed atomic.Int64
}

// errUnreachable is what spyCheckpoints returns while unreachable.
var errUnreachable = errors.New("feedtest: database unreachable (injected)")

func (c *spyCheckpoints) Acquire(ctx context.Context, name, owner string, ttl time.Duration) (feed.Lease, error) {
	if c.unreachable.Load() {
		return feed.Lease{}, errUnreachable
	}
	start := time.Now()
	l, err := c.CheckpointStore.Acquire(ctx, name, owner, ttl)
	switch {
	case err == nil:
		c.confirmed.Store(start.UnixNano())
	case errors.Is(err, feed.ErrLeaseHeld):
		c.held.Add(1)
	}
	return l, err
}

func (c *spyCheckpoints) Renew(ctx context.Context, l feed.Lease, ttl time.Duration) error {
	if c.pauseRenews.Load() {
		return nil
	}
	if c.unreachable.Load() {
		return errUnreachable
	}
	start := time.Now()
	err := c.CheckpointStore.Renew(ctx, l, ttl)
	if err == nil {
		c.confirmed.Store(start.UnixNano())
	}
	return err
}

func (c *spyCheckpoints) Begin(ctx context.Context) (feed.Unit, error) {
	u, err := c.CheckpointStore.Begin(ctx)
	if err != nil {
		return nil, err
	}
	c.open.Add(1)
	c.begun.Add(1)
	return &spyUnit{Unit: u, open: &c.open}, nil
}

func (c *spyCheckpoints) Advance(ctx context.Context, l feed.Lease, pos events.Token) error {
	c.advances.Add(1)
	return c.CheckpointStore.Advance(ctx, l, pos)
}

// spyUnit counts itself closed at its first Commit or Rollback.
type spyUnit struct {
	feed.Unit
	open *atomic.Int64
	once sync.Once
}

func (u *spyUnit) done() { u.once.Do(func() { u.open.Add(-1) }) }

func (u *spyUnit) Commit(ctx context.Context, moves ...feed.Move) error {
	defer u.done()
	return u.Unit.Commit(ctx, moves...)
}

func (u *spyUnit) Rollback(ctx context.Context) error {
	defer u.done()
	return u.Unit.Rollback(ctx)
}

// Abort passes feed.Aborter on, so a spied PostgreSQL unit given up under
// its handler is still aborted, not rolled back beside it; any other is
// rolled back, as the consumer does.
func (u *spyUnit) Abort(ctx context.Context) error {
	defer u.done()
	if a, ok := u.Unit.(feed.Aborter); ok {
		return a.Abort(ctx)
	}
	return u.Unit.Rollback(ctx)
}

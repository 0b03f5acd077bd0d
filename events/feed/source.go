package feed

import (
	"context"
	"errors"
	"time"

	"github.com/converge-es/converge/events"
)

// ErrLeaseHeld is returned by Acquire while another live consumer holds the
// consumer name.
var ErrLeaseHeld = errors.New("feed: consumer name is held by another live consumer")

// ErrLeaseLost is returned when a consumer's lease was taken over (it stopped
// renewing for longer than its TTL): its writes are rolled back and it must
// stop delivering.
var ErrLeaseLost = errors.New("feed: lease lost to another consumer")

// Source is what a Subscriber reads: a store's global order, a wake-up
// signal and durable checkpoints. pgstore.Store and memstore.Store implement
// it.
type Source interface {
	// ReadFeed returns up to limit events strictly after `after` in global
	// order. A non-empty category keeps only events whose stream id is the
	// category or starts with category + "-".
	ReadFeed(ctx context.Context, after events.Token, category string, limit int) (Batch, error)
	// Wake returns a channel closed when new events may have become
	// readable. Take it before reading, wait on it after an empty read.
	Wake() <-chan struct{}
	// PushHealthy reports whether Wake is currently fed by push (PostgreSQL
	// LISTEN). While it is false the subscriber polls.
	PushHealthy() bool
	// Checkpoints returns the durable per-consumer positions.
	Checkpoints() CheckpointStore
}

// Batch is one read of the feed.
type Batch struct {
	Events []events.Envelope
	// Pending reports committed events after the cursor that the read did
	// not return: held back because an older transaction is still open (see
	// pgstore), or committed just after the read. The subscriber retries
	// with a short backoff instead of waiting for a wake-up that may never
	// come.
	Pending bool
}

// CheckpointStore keeps one position per consumer name and guarantees one
// active consumer per name through leases with fencing generations.
type CheckpointStore interface {
	// Acquire takes the lease on name for owner, or renews it when owner
	// holds it already. It fails with ErrLeaseHeld while another owner's
	// lease is unexpired. The returned lease carries the stored position.
	Acquire(ctx context.Context, name, owner string, ttl time.Duration) (Lease, error)
	// Renew extends a held lease; ErrLeaseLost when it was taken over.
	Renew(ctx context.Context, l Lease, ttl time.Duration) error
	// Release gives the lease up so another consumer can take over at once.
	Release(ctx context.Context, l Lease) error
	// Position returns the stored position of name (zero when unknown).
	Position(ctx context.Context, name string) (events.Token, error)
	// Begin starts the unit of work that a handler may write through and
	// that stores the new position when it commits.
	Begin(ctx context.Context) (Unit, error)
}

// Lease is a consumer's claim on a name.
type Lease struct {
	Name       string
	Owner      string
	Generation int64
	Position   events.Token
}

// Unit is a handler's unit of work: its writes and the new checkpoint commit
// together or not at all.
type Unit interface {
	// Context returns ctx carrying the unit, so handlers can reach it
	// (pgstore.TxFromContext on PostgreSQL).
	Context(ctx context.Context) context.Context
	// Commit stores pos as the lease's checkpoint and commits the handler's
	// writes with it. It fails with ErrLeaseLost, rolling everything back,
	// when the lease's generation is no longer current.
	Commit(ctx context.Context, l Lease, pos events.Token) error
	// Rollback discards the handler's writes. Safe after Commit.
	Rollback(ctx context.Context) error
}

// CheckpointWatcher is implemented by sources that announce checkpoint moves,
// including those made by other processes (consistency.Tracker uses it).
type CheckpointWatcher interface {
	// WatchCheckpoints calls fn for every checkpoint move it learns of until
	// the returned cancel func is called. fn must not block.
	WatchCheckpoints(fn func(name string, pos events.Token)) (cancel func())
}

// ConsumerInfo is what a store knows of one consumer name.
type ConsumerInfo struct {
	Name     string
	Position events.Token
	// Owner is empty when no consumer holds the name.
	Owner      string
	Generation int64
	LeaseUntil time.Time
	// HeartbeatAt is the holder's last renewal or commit: a stuck runner
	// shows as a growing heartbeat age.
	HeartbeatAt time.Time
	// UpdatedAt is when the position last moved.
	UpdatedAt time.Time
}

// Inspector answers the questions lag monitoring asks of a store.
type Inspector interface {
	// Head returns the token of the newest committed event.
	Head(ctx context.Context) (events.Token, error)
	// CountBetween counts events after `after` up to and including upTo.
	CountBetween(ctx context.Context, after, upTo events.Token) (int64, error)
	// OldestAfter returns when the first event after `after` in global
	// order was recorded; false when there is none.
	OldestAfter(ctx context.Context, after events.Token) (time.Time, bool, error)
	// Consumers lists every consumer name with its position and lease.
	Consumers(ctx context.Context) ([]ConsumerInfo, error)
	// HorizonAge is how long the oldest open transaction has been holding
	// delivery back (always 0 in memory).
	HorizonAge(ctx context.Context) (time.Duration, error)
}

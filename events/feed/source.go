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
	// order that match f, and how far it looked (Batch.ScannedTo), so a
	// consumer moves past events it does not handle without being handed
	// each of them. The filter is applied by the store (in SQL on
	// PostgreSQL).
	ReadFeed(ctx context.Context, after events.Token, f Filter, limit int) (Batch, error)
	// Wake returns a channel closed when new events may have become
	// readable. Take it before reading, wait on it after an empty read.
	Wake() <-chan struct{}
	// PushHealthy reports whether Wake is currently fed by push (PostgreSQL
	// LISTEN). While it is false the subscriber polls.
	PushHealthy() bool
	// Checkpoints returns the durable per-consumer positions.
	Checkpoints() CheckpointStore
	// Rows returns the store's rows outside any unit: committed reads,
	// writes that commit by themselves.
	Rows() Rows
}

// Batch is one read of the feed.
type Batch struct {
	// Events are the matching events, in global order.
	Events []events.Envelope
	// ScannedTo is how far the read looked: every event after the read's
	// `after` and at or before ScannedTo that matches the filter is in
	// Events, so a consumer may move its position to ScannedTo once it has
	// handled them. It is at least the last event's token when Events is
	// not empty, and the zero token when the read found nothing readable
	// after `after` at all.
	ScannedTo events.Token
	// Pending reports, for a read that returned no events, committed
	// events after the cursor that it did not return: held back because an
	// older transaction is still open (see pgstore), or committed just
	// after the read. The subscriber retries with a short backoff instead
	// of waiting for a wake-up that may never come. A read that returned
	// events may leave it false: its reader reads again anyway.
	Pending bool
}

// CheckpointStore keeps one position per consumer name and guarantees one
// active consumer per name through leases with fencing generations.
type CheckpointStore interface {
	// Acquire takes the lease on name for owner: when nobody holds it, its
	// holder's lease expired, or owner is the holder (a retry of an
	// acquire whose answer was lost). It fails with ErrLeaseHeld while
	// another owner's lease is unexpired. Every Acquire starts a new
	// generation, the holder's included, so the lease it returns fences
	// off every lease returned before: two callers never share a lease,
	// even under one owner string. Renew, not Acquire, keeps a lease. The
	// returned lease carries the stored position.
	Acquire(ctx context.Context, name, owner string, ttl time.Duration) (Lease, error)
	// Renew extends a held lease; ErrLeaseLost when it was taken over.
	Renew(ctx context.Context, l Lease, ttl time.Duration) error
	// Release gives the lease up so another consumer can take over at once.
	Release(ctx context.Context, l Lease) error
	// Position returns the stored position of name (zero when unknown).
	Position(ctx context.Context, name string) (events.Token, error)
	// Begin starts a unit of work: a handler's appends and row writes, and
	// the checkpoint moves given to its Commit, take effect together. On
	// PostgreSQL the transaction begins lazily, at the unit's first use.
	Begin(ctx context.Context) (Unit, error)
	// Advance moves the checkpoint of l to pos outside any unit, fenced by
	// l's generation like a commit: for a consumer that read past events
	// it does not handle (Batch.ScannedTo) and has nothing to write. It
	// never moves a checkpoint back. ErrLeaseLost when l is no longer
	// current.
	Advance(ctx context.Context, l Lease, pos events.Token) error
	// Heartbeat records member as a live member of group until ttl from
	// now and returns the group's live members, sorted. Partitioned
	// consumers use it to share their partitions between processes.
	Heartbeat(ctx context.Context, group, member string, ttl time.Duration) ([]string, error)
	// Leave removes member from group at once, so the others take over its
	// partitions without waiting for its heartbeat to expire.
	Leave(ctx context.Context, group, member string) error
}

// Lease is a consumer's claim on a name.
type Lease struct {
	Name       string
	Owner      string
	Generation int64
	Position   events.Token
}

// Unit is a handler's unit of work (see events.Unit): its appends, its row
// writes and the checkpoint moves given to Commit take effect together or
// not at all.
type Unit interface {
	events.Unit
	// Rows is the unit's view of the store's rows: reads see the unit's
	// own writes, and writes take effect when the unit commits.
	Rows() Rows
	// Positions returns the stored checkpoint positions of names (zero for
	// unknown names), in order. In memory the unit's commit fails with
	// ErrConflict when one of them moved after this read; on PostgreSQL
	// they are read as committed when the statement runs (serialise with
	// row locks: Rows.Get with LockUpdate).
	Positions(ctx context.Context, names ...string) ([]events.Token, error)
	// Context returns ctx carrying the unit (events.UnitFromContext, and
	// pgstore.TxFromContext on PostgreSQL).
	Context(ctx context.Context) context.Context
	// Commit stores each move's position as its lease's checkpoint and
	// commits the unit's writes with them. It fails with ErrLeaseLost,
	// rolling everything back, when a move's lease generation is no longer
	// current, and with ErrConflict (in memory) when a row or position read
	// with a lock changed since. With no moves it commits the writes alone.
	Commit(ctx context.Context, moves ...Move) error
	// Rollback discards the unit's writes. Safe after Commit, and twice.
	Rollback(ctx context.Context) error
}

// Announcer is a Unit that can wake the feed readers of other processes
// when it commits, as an append does, although it appends nothing. A unit
// whose rows other processes act on at a time of their own, such as a saga
// step that schedules a timer with neither an append nor a checkpoint
// move, calls Announce; otherwise another process sleeping until its
// earliest known timer would learn of the new one only at its next
// safety poll. In memory every commit wakes the store's readers, so
// Announce has nothing more to do.
type Announcer interface {
	// Announce makes a successful Commit wake the store's readers in every
	// process. It does nothing on a unit that has ended.
	Announce()
}

// Aborter is a Unit that can be ended from outside while its handler may
// still be using it. A consumer gives up on a handler that has not
// answered within LeaseTTL after its delivery ended, and must end its
// unit then: the lease is given back and the event will be delivered
// again, so the unit must never commit. Rollback cannot do that safely on
// PostgreSQL: the handler may be running a statement on the unit's
// connection at that moment (a pgx connection is not safe for concurrent
// use), and a rollback that does go through hands the connection back to
// the pool, where a late statement of the handler would run inside
// another unit's transaction. A Unit without Abort is rolled back
// instead, which is safe where a unit holds nothing a handler could
// still be using (in memory).
type Aborter interface {
	// Abort ends the unit while its handler may still be using it: its
	// writes are discarded as by Rollback, the handler's later calls on
	// the unit fail, and nothing the unit held (on PostgreSQL, its
	// connection) is ever handed to anyone else. A statement the handler
	// is running is cancelled. ctx bounds how long Abort waits for that;
	// the unit ends whatever Abort returns. It does nothing on a unit that
	// has ended, and is safe twice.
	Abort(ctx context.Context) error
}

// RowsFor returns what a read without a lock goes through: the rows of the
// unit ctx carries when that unit belongs to the store of reg, else src's
// committed rows. A unit that has begun holds a connection on PostgreSQL,
// and a read through src meanwhile takes a second one: units doing that at
// once deadlock a pool no larger than their number. Through the unit, the
// read uses the connection it holds (each statement still sees what is
// committed) and sees its own writes; a unit that has not begun is not
// begun by such a read.
func RowsFor(ctx context.Context, reg *events.Registry, src Source) Rows {
	if eu, ok := events.UnitFromContext(ctx); ok && eu.Registry() == reg {
		if u, ok := eu.(Unit); ok {
			return u.Rows()
		}
	}
	return src.Rows()
}

// Move is a checkpoint move committed with a unit: Position becomes Lease's
// checkpoint, if Lease's generation is still current.
type Move struct {
	Lease    Lease
	Position events.Token
	// From, when set, is where the unit's work began: the commit then also
	// requires the stored checkpoint to be there still, and fails with
	// ErrLeaseLost, writing nothing, when it is not. A commit whose reply
	// was lost (the server committed, the client saw a broken connection)
	// has already moved the checkpoint, so the unit that redelivers its
	// events cannot apply them a second time. Consumers set it; leave it
	// nil for a move that does not follow from where the checkpoint was.
	From *events.Token
}

// ErrConflict says a unit lost to a concurrent unit: nothing was written;
// run the unit's work again. In memory, Commit returns it when a row or
// checkpoint the unit read with a lock was changed by another unit since,
// and an append returns it when it would close a deadlock. PostgreSQL makes
// the second unit wait for the first instead, and returns it (wrapping the
// server's error) from the statement it aborted to break a deadlock, or for
// a serialization failure; the unit can then only roll back.
var ErrConflict = errors.New("feed: unit conflicts with a concurrent unit (nothing was written; run it again)")

// CheckpointWatcher is implemented by sources that announce checkpoint moves,
// including those made by other processes (consistency.Tracker uses it).
type CheckpointWatcher interface {
	// WatchCheckpoints calls fn for every checkpoint move it learns of until
	// the returned cancel func is called. fn must not block. A source whose
	// push was down (PushHealthy false) may, when it is back, call fn with
	// every checkpoint's current position, moved or not: moves made during
	// the outage were lost, and a watcher must not miss a rewind among them.
	WatchCheckpoints(fn func(name string, pos events.Token)) (cancel func())
}

// MembershipWatcher is implemented by sources that push membership
// changes between processes. A processor announces its group when it joins
// (its first heartbeat, and again after heartbeats failed), when it leaves,
// and when one of its partitions gives its lease up (the partition moved
// to another member, or the processor stops: Close may announce the leave
// before the leases are back); every processor of the group, here or in
// another process, then heartbeats at once and its standing-by partitions
// try their leases again. A join or a graceful leave then moves partitions
// in a few round trips instead of at the next heartbeat (every
// RenewInterval, a third of LeaseTTL by default). Announcements are best
// effort: one that is lost only delays a move to that heartbeat, as for a
// source without this interface. A member that dies announces nothing;
// its share moves when its membership and leases expire.
type MembershipWatcher interface {
	// AnnounceGroup tells the watchers of every process sharing the
	// source's store, this one's at once, that group changed. It never
	// fails: a failure is at most logged.
	AnnounceGroup(ctx context.Context, group string)
	// WatchMembership calls fn with the group's name for every
	// announcement it hears of until the returned cancel func is called.
	// fn must not block.
	WatchMembership(fn func(group string)) (cancel func())
}

// WriteCounter is implemented by both stores' units. Writes counts the
// calls that may have written through the unit so far: appends, row puts
// and deletes, and on PostgreSQL each hand-out of its transaction
// (pgstore.TxFromContext). A runtime compares it around user code to learn
// whether that code wrote through the unit: a unit cannot undo those
// writes apart from the rest of it.
type WriteCounter interface {
	Writes() uint64
}

// ConsumerInfo is what a store knows of one consumer name.
type ConsumerInfo struct {
	Name     string
	Position events.Token
	// Owner is empty when no consumer holds the name: never taken,
	// released, or its lease ran out (by the store's clock; LeaseUntil
	// then says when).
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
	// OldestAfter returns when the oldest event after `after` in global
	// order was recorded (on PostgreSQL, the oldest of the first
	// pgstore.OldestScan: the first in feed order may be younger than
	// events after it); false when there is none.
	OldestAfter(ctx context.Context, after events.Token) (time.Time, bool, error)
	// Consumers lists every consumer name with its position and lease.
	Consumers(ctx context.Context) ([]ConsumerInfo, error)
	// HorizonAge is how long the oldest open transaction has been holding
	// delivery back: on PostgreSQL any transaction in the database, in
	// memory the oldest open unit that appended. Zero when none does.
	HorizonAge(ctx context.Context) (time.Duration, error)
}

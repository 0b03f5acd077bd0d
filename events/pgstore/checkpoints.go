package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// ErrNoUnit is returned by TxFromContext outside a feed handler.
var ErrNoUnit = errors.New("pgstore: no unit of work in context (TxFromContext works inside handlers fed by a feed.Subscriber over a pgstore.Store)")

// Checkpoints implements feed.Source.
func (s *Store) Checkpoints() feed.CheckpointStore { return checkpoints{s} }

// checkpoints keeps consumer positions and leases in the checkpoints table.
// Lease times come from the database clock, so processes with skewed clocks
// agree on who holds a name.
type checkpoints struct{ s *Store }

func (c checkpoints) Acquire(ctx context.Context, name, owner string, ttl time.Duration) (feed.Lease, error) {
	if c.s.isClosed() {
		return feed.Lease{}, errClosed
	}
	if err := feed.ValidateLease(name, owner, ttl); err != nil {
		return feed.Lease{}, err
	}
	var gen, major, minor int64
	err := c.s.pool.QueryRow(ctx, c.s.q.acquire, name, owner, ttl).Scan(&gen, &major, &minor)
	if errors.Is(err, pgx.ErrNoRows) {
		return feed.Lease{}, feed.ErrLeaseHeld
	}
	if err != nil {
		return feed.Lease{}, fmt.Errorf("pgstore: acquire %q: %w", name, classify(err))
	}
	return feed.Lease{Name: name, Owner: owner, Generation: gen, Position: events.MakeToken(uint64(major), uint64(minor))}, nil
}

func (c checkpoints) Renew(ctx context.Context, l feed.Lease, ttl time.Duration) error {
	if c.s.isClosed() {
		return errClosed
	}
	if err := feed.ValidateLease(l.Name, l.Owner, ttl); err != nil {
		return err
	}
	tag, err := c.s.pool.Exec(ctx, c.s.q.renew, l.Name, l.Owner, l.Generation, ttl)
	if err != nil {
		return fmt.Errorf("pgstore: renew %q: %w", l.Name, classify(err))
	}
	if tag.RowsAffected() == 0 {
		return leaseLost(l)
	}
	return nil
}

func (c checkpoints) Release(ctx context.Context, l feed.Lease) error {
	if c.s.isClosed() {
		return errClosed
	}
	if err := feed.ValidateLeaseHolder(l); err != nil {
		return err
	}
	if _, err := c.s.pool.Exec(ctx, c.s.q.release, l.Name, l.Owner, l.Generation); err != nil {
		return fmt.Errorf("pgstore: release %q: %w", l.Name, classify(err))
	}
	return nil
}

func (c checkpoints) Position(ctx context.Context, name string) (events.Token, error) {
	if c.s.isClosed() {
		return events.Token{}, errClosed
	}
	if err := feed.ValidateConsumerNames(name); err != nil {
		return events.Token{}, err
	}
	var major, minor int64
	err := c.s.pool.QueryRow(ctx, c.s.q.position, name).Scan(&major, &minor)
	if errors.Is(err, pgx.ErrNoRows) {
		return events.Token{}, nil
	}
	if err != nil {
		return events.Token{}, fmt.Errorf("pgstore: position of %q: %w", name, classify(err))
	}
	return events.MakeToken(uint64(major), uint64(minor)), nil
}

// Begin returns a unit whose transaction starts only when it is first
// used: a handler that writes nothing costs one UPDATE of the checkpoint
// and no transaction at all.
func (c checkpoints) Begin(ctx context.Context) (feed.Unit, error) {
	if c.s.isClosed() {
		return nil, events.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c.s.newUnit(), nil
}

// Advance moves l's checkpoint forward to pos in one statement, fenced by
// l's generation. A position at or before the stored one leaves it.
func (c checkpoints) Advance(ctx context.Context, l feed.Lease, pos events.Token) error {
	if c.s.isClosed() {
		return errClosed
	}
	if err := feed.ValidateLeaseHolder(l); err != nil {
		return err
	}
	major, minor, err := tokenArgs(pos)
	if err != nil {
		return err
	}
	var moved bool
	err = c.s.pool.QueryRow(ctx, c.s.q.advance, l.Name, l.Owner, l.Generation, major, minor).Scan(&moved)
	if errors.Is(err, pgx.ErrNoRows) {
		return leaseLost(l)
	}
	if err != nil {
		return fmt.Errorf("pgstore: advance %q: %w", l.Name, classify(err))
	}
	if moved {
		c.s.checkpointMoved(l.Name, pos)
	}
	return nil
}

// leaseLost is the error for a lease whose generation is no longer current.
func leaseLost(l feed.Lease) error {
	return fmt.Errorf("%w: %q generation %d of owner %q is no longer current (stop delivering; Acquire again to resume)",
		feed.ErrLeaseLost, l.Name, l.Generation, l.Owner)
}

// moveRefused is a commit's refused move: its lease lost or, for a move
// with From, its checkpoint moved away from From (one statement checks
// both, so it cannot tell which).
func moveRefused(m feed.Move) error {
	if m.From == nil {
		return leaseLost(m.Lease)
	}
	l := m.Lease
	return fmt.Errorf("%w: %q generation %d of owner %q is no longer current, or its checkpoint is no longer at %s where the unit began (a commit whose reply was lost moved it): stop delivering; Acquire again to resume from the stored checkpoint",
		feed.ErrLeaseLost, l.Name, l.Generation, l.Owner, m.From)
}

// Heartbeat records member in group until ttl from now (database clock),
// drops expired members and returns the live ones, sorted byte-wise. The
// three statements travel in one round trip and run in one implicit
// transaction, so they share now().
func (c checkpoints) Heartbeat(ctx context.Context, group, member string, ttl time.Duration) ([]string, error) {
	if c.s.isClosed() {
		return nil, errClosed
	}
	if err := feed.ValidateMember(group, member, ttl); err != nil {
		return nil, err
	}
	b := &pgx.Batch{}
	b.Queue(c.s.q.heartbeat, group, member, ttl)
	b.Queue(c.s.q.dropExpired, group)
	b.Queue(c.s.q.members, group)
	br := c.s.pool.SendBatch(ctx, b)
	defer br.Close()
	for range 2 {
		if _, err := br.Exec(); err != nil {
			return nil, fmt.Errorf("pgstore: heartbeat %q: %w", group, classify(err))
		}
	}
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("pgstore: heartbeat %q: %w", group, classify(err))
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("pgstore: heartbeat %q: %w", group, classify(err))
	}
	return out, nil
}

// Leave removes member from group at once.
func (c checkpoints) Leave(ctx context.Context, group, member string) error {
	if c.s.isClosed() {
		return errClosed
	}
	if err := feed.ValidateMemberNames(group, member); err != nil {
		return err
	}
	if _, err := c.s.pool.Exec(ctx, c.s.q.leave, group, member); err != nil {
		return fmt.Errorf("pgstore: leave %q: %w", group, classify(err))
	}
	return nil
}

// Position returns a consumer's stored position (consistency.PositionReader).
func (s *Store) Position(ctx context.Context, name string) (events.Token, error) {
	if s.isClosed() {
		return events.Token{}, errClosed
	}
	return checkpoints{s}.Position(ctx, name)
}

// TxFromContext returns the transaction of the unit of work ctx carries
// (a feed handler's), beginning it on first use. Whatever the handler
// writes through it commits together with the handler's checkpoint on Ack,
// and is rolled back on Nack. Its Commit and Rollback fail (the unit does
// both), and once the unit has ended every call fails with
// pgx.ErrTxClosed. The call sends the unit's held row writes first, so SQL
// on the transaction sees them; rows written through feed.Rows afterwards
// reach the table at commit.
func TxFromContext(ctx context.Context) (pgx.Tx, error) {
	eu, ok := events.UnitFromContext(ctx)
	if !ok {
		return nil, ErrNoUnit
	}
	u, ok := eu.(*unit)
	if !ok {
		return nil, fmt.Errorf("%w: the context carries a %T, not a PostgreSQL unit", ErrNoUnit, eu)
	}
	tx, err := u.txFor(ctx)
	if err != nil {
		return nil, err
	}
	// What the caller does with it is out of sight: count it as a write.
	u.writes.Add(1)
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.handed == nil {
		u.handed = &unitTx{Tx: tx, u: u}
	}
	return u.handed, nil
}

// checkpointMoved tells watchers in this process now and other processes
// right after.
func (s *Store) checkpointMoved(name string, pos events.Token) {
	// The unit that just ended may have held the read horizon back.
	s.wake.Notify()
	s.fireCheckpoint(name, pos)
	s.notifier.kick("c:"+name, s.checkpointPayload(name, pos))
}

// checkpointMove is what a checkpoint watcher is told.
type checkpointMove struct {
	name string
	pos  events.Token
}

// WatchCheckpoints implements feed.CheckpointWatcher.
func (s *Store) WatchCheckpoints(fn func(name string, pos events.Token)) (cancel func()) {
	return s.watchers.Add(func(m checkpointMove) { fn(m.name, m.pos) })
}

func (s *Store) fireCheckpoint(name string, pos events.Token) {
	s.watchers.Fire(checkpointMove{name, pos})
}

var _ interface {
	events.Store
	feed.Source
	feed.CheckpointWatcher
	feed.MembershipWatcher
} = (*Store)(nil)

var _ execer = (*pgxpool.Pool)(nil)

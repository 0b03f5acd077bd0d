package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
	if name == "" || owner == "" {
		return feed.Lease{}, errors.New("pgstore: Acquire needs a consumer name and an owner")
	}
	var gen, major, minor int64
	err := c.s.pool.QueryRow(ctx, c.s.q.acquire, name, owner, ttl).Scan(&gen, &major, &minor)
	if errors.Is(err, pgx.ErrNoRows) {
		return feed.Lease{}, feed.ErrLeaseHeld
	}
	if err != nil {
		return feed.Lease{}, fmt.Errorf("pgstore: acquire %q: %w", name, err)
	}
	return feed.Lease{Name: name, Owner: owner, Generation: gen, Position: events.MakeToken(uint64(major), uint64(minor))}, nil
}

func (c checkpoints) Renew(ctx context.Context, l feed.Lease, ttl time.Duration) error {
	tag, err := c.s.pool.Exec(ctx, c.s.q.renew, l.Name, l.Owner, l.Generation, ttl)
	if err != nil {
		return fmt.Errorf("pgstore: renew %q: %w", l.Name, err)
	}
	if tag.RowsAffected() == 0 {
		return feed.ErrLeaseLost
	}
	return nil
}

func (c checkpoints) Release(ctx context.Context, l feed.Lease) error {
	if _, err := c.s.pool.Exec(ctx, c.s.q.release, l.Name, l.Owner, l.Generation); err != nil {
		return fmt.Errorf("pgstore: release %q: %w", l.Name, err)
	}
	return nil
}

func (c checkpoints) Position(ctx context.Context, name string) (events.Token, error) {
	var major, minor int64
	err := c.s.pool.QueryRow(ctx, c.s.q.position, name).Scan(&major, &minor)
	if errors.Is(err, pgx.ErrNoRows) {
		return events.Token{}, nil
	}
	if err != nil {
		return events.Token{}, fmt.Errorf("pgstore: position of %q: %w", name, err)
	}
	return events.MakeToken(uint64(major), uint64(minor)), nil
}

// Begin returns a unit whose transaction starts only when a handler asks
// for it (TxFromContext): a handler that writes nothing costs one UPDATE of
// the checkpoint and no transaction at all.
func (c checkpoints) Begin(context.Context) (feed.Unit, error) {
	return &unit{s: c.s}, nil
}

// Position returns a consumer's stored position (consistency.PositionReader).
func (s *Store) Position(ctx context.Context, name string) (events.Token, error) {
	return checkpoints{s}.Position(ctx, name)
}

type unitKey struct{}

// unit is a handler's transaction, begun lazily.
type unit struct {
	s    *Store
	mu   sync.Mutex
	tx   pgx.Tx
	done bool
}

func (u *unit) Context(ctx context.Context) context.Context {
	return context.WithValue(ctx, unitKey{}, u)
}

func (u *unit) txFor(ctx context.Context) (pgx.Tx, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return nil, errors.New("pgstore: the unit of work has ended (a handler used its transaction after Ack/Nack)")
	}
	if u.tx == nil {
		tx, err := u.s.pool.Begin(ctx)
		if err != nil {
			return nil, fmt.Errorf("pgstore: begin handler transaction: %w", err)
		}
		u.tx = tx
	}
	return u.tx, nil
}

// Commit stores pos and commits the handler's writes with it, fenced by the
// lease generation: a consumer that lost its lease commits nothing.
func (u *unit) Commit(ctx context.Context, l feed.Lease, pos events.Token) error {
	major, minor, err := tokenArgs(pos)
	if err != nil {
		return err
	}
	u.mu.Lock()
	tx := u.tx
	u.done = true
	u.mu.Unlock()
	var db execer = u.s.pool
	if tx != nil {
		db = tx
	}
	tag, err := db.Exec(ctx, u.s.q.commit, l.Name, l.Owner, l.Generation, major, minor)
	if err == nil && tag.RowsAffected() == 0 {
		err = feed.ErrLeaseLost
	}
	if err == nil && tx != nil {
		err = tx.Commit(ctx)
	}
	if err != nil {
		if tx != nil {
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
		if errors.Is(err, feed.ErrLeaseLost) {
			return err
		}
		return fmt.Errorf("pgstore: commit checkpoint %q: %w", l.Name, err)
	}
	u.s.checkpointMoved(l.Name, pos)
	return nil
}

func (u *unit) Rollback(ctx context.Context) error {
	u.mu.Lock()
	tx := u.tx
	u.done = true
	u.mu.Unlock()
	if tx == nil {
		return nil
	}
	err := tx.Rollback(context.WithoutCancel(ctx))
	if err != nil && !errors.Is(err, pgx.ErrTxClosed) {
		return fmt.Errorf("pgstore: roll back handler transaction: %w", err)
	}
	return nil
}

// TxFromContext returns the transaction of the feed handler running with
// ctx, beginning it on first use. Whatever the handler writes through it
// commits together with the handler's checkpoint on Ack, and is rolled back
// on Nack. Do not commit or roll it back yourself.
func TxFromContext(ctx context.Context) (pgx.Tx, error) {
	u, ok := ctx.Value(unitKey{}).(*unit)
	if !ok {
		return nil, ErrNoUnit
	}
	return u.txFor(ctx)
}

// checkpointMoved tells watchers in this process now and other processes
// right after.
func (s *Store) checkpointMoved(name string, pos events.Token) {
	// The unit that just ended may have held the read horizon back.
	s.wake.Notify()
	s.fireCheckpoint(name, pos)
	s.notifier.kick("c:"+name, s.checkpointPayload(name, pos))
}

// WatchCheckpoints implements feed.CheckpointWatcher.
func (s *Store) WatchCheckpoints(fn func(name string, pos events.Token)) (cancel func()) {
	s.watchMu.Lock()
	id := s.watchID
	s.watchID++
	s.watchers[id] = fn
	s.watchMu.Unlock()
	return func() {
		s.watchMu.Lock()
		delete(s.watchers, id)
		s.watchMu.Unlock()
	}
}

func (s *Store) fireCheckpoint(name string, pos events.Token) {
	s.watchMu.Lock()
	fns := make([]func(string, events.Token), 0, len(s.watchers))
	for _, fn := range s.watchers {
		fns = append(fns, fn)
	}
	s.watchMu.Unlock()
	for _, fn := range fns {
		fn(name, pos)
	}
}

var _ interface {
	events.Store
	feed.Source
	feed.CheckpointWatcher
} = (*Store)(nil)

var _ execer = (*pgxpool.Pool)(nil)

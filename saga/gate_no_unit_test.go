package saga_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
)

// TestGatedStepHoldsNoUnitWhileItWaits checks, on every store, the promise
// that a gated step waits for its read models without holding a unit of
// work: when the runtime did not gate the event, the engine waits (up to
// GateTimeout) before it uses the event's unit at all, and while a parked
// step waits the driver watches its models with no unit open. On memory a
// unit used before the wait would hold its row locks and appends across
// it (PostgreSQL's transaction; see TestGatedStepHoldsNoTransactionWhileItWaits
// for the server's view), so the test watches the units themselves.
func TestGatedStepHoldsNoUnitWhileItWaits(t *testing.T) {
	t.Parallel()
	forEachSeed(t, 5, 2, func(t *testing.T, mk storeMaker, seed uint64) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 29))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		store := &unitWatch{Store: newStore(t, mk)}
		tracker, err := consistency.NewTracker(&consistency.TrackerConfig{})
		require.NoError(t, err)
		s := saga.New[orderState]("no_unit", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
		saga.On(s, byOrder[StockReserved], func(*saga.Step[orderState], StockReserved) error { return nil }, saga.Reads(summaryModel))
		waiters := func(n int) { awaitWaiters(ctx, t, tracker, n) }
		status := func(eng *saga.Engine, id string) saga.Status {
			tl, err := eng.Show(ctx, "no_unit", id)
			require.NoError(t, err)
			return tl.Info.Status
		}
		// Several steps wait at once, each in the unit of its event.
		n := 1 + rng.IntN(3)
		waits, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{s}, Tracker: tracker, GateTimeout: time.Minute})
		require.NoError(t, err)
		b := bare{store: store, engine: waits}
		var last events.Token
		units := make([]*watchedUnit, n)
		done := make(chan error, n)
		for i := range n {
			id := fmt.Sprint(i)
			b.deliver(t, b.append(t, "order-"+id, OrderPlaced{OrderID: id}))
			reserved := b.append(t, "order-"+id, StockReserved{OrderID: id})
			last = reserved.Token
			u, err := store.Checkpoints().Begin(ctx)
			require.NoError(t, err)
			units[i], _ = u.(*watchedUnit) // unitWatch begins no other kind
			go func() {
				err := waits.Handle(u.Context(events.ContextWithUnit(ctx, u)), reserved)
				if err == nil {
					err = u.Commit(ctx)
				}
				done <- err
			}()
		}
		waiters(n)
		var used []int
		for i, u := range units {
			if u.used.Load() {
				used = append(used, i)
			}
		}
		// The units end before anything is asserted.
		tracker.Advance(summaryModel, last)
		for range n {
			require.NoError(t, <-done)
		}
		require.Empty(t, used, "steps used their units while they waited for the model")
		for i := range n {
			require.Equal(t, saga.StatusRunning, status(waits, fmt.Sprint(i)))
		}

		// Steps parked, and the driver watching their models.
		parks, err := saga.NewEngine(&saga.EngineConfig{
			Store: store, Sagas: []saga.Definition{s}, Tracker: tracker, GateTimeout: time.Nanosecond, SweepInterval: time.Hour,
		})
		require.NoError(t, err)
		b = bare{store: store, engine: parks}
		for i := range n {
			id := fmt.Sprint(n + i)
			b.deliver(t, b.append(t, "order-"+id, OrderPlaced{OrderID: id}))
			reserved := b.append(t, "order-"+id, StockReserved{OrderID: id})
			last = reserved.Token
			b.deliver(t, reserved)
			require.Equal(t, saga.StatusParked, status(parks, id))
		}
		passes := passSignals(parks)
		require.NoError(t, parks.Start(ctx))
		<-passes
		waiters(1) // one watch for the set of models, however many steps wait on it
		open := store.open.Load()
		tracker.Advance(summaryModel, last)
		_, err = parks.RunParked(ctx) // whether or not the driver got there first
		require.NoError(t, err)
		require.NoError(t, parks.Stop(ctx))
		require.Zero(t, open, "units were open while the parked steps waited for the model")
		for i := range n {
			require.Equal(t, saga.StatusRunning, status(parks, fmt.Sprint(n+i)))
		}
	})
}

// awaitWaiters returns once n waits for the summary model are under way.
func awaitWaiters(ctx context.Context, t *testing.T, tracker *consistency.Tracker, n int) {
	t.Helper()
	awaitWaiting(ctx, t, tracker, summaryModel, n)
}

// awaitWaiting returns once n waits are blocked on model.
func awaitWaiting(ctx context.Context, t *testing.T, tracker *consistency.Tracker, model string, n int) {
	t.Helper()
	for {
		changed := tracker.WaitersChanged()
		if tracker.Waiting(model) >= n {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			require.FailNow(t, "nothing waited for the model", model)
		}
	}
}

// unitWatch is a store that counts the units begun through it (all, and
// those not yet ended), and hands out units that record their first use. When conflict is
// set and says so, a unit's commit rolls it back and fails with
// feed.ErrConflict, as a memory unit that lost a race does.
type unitWatch struct {
	saga.Store
	open     atomic.Int32
	begun    atomic.Int32 // units begun in all
	conflict func() bool
}

func (s *unitWatch) Checkpoints() feed.CheckpointStore {
	return watchedCheckpoints{CheckpointStore: s.Store.Checkpoints(), s: s}
}

type watchedCheckpoints struct {
	feed.CheckpointStore
	s *unitWatch
}

func (c watchedCheckpoints) Begin(ctx context.Context) (feed.Unit, error) {
	u, err := c.CheckpointStore.Begin(ctx)
	if err != nil {
		return nil, err
	}
	c.s.open.Add(1)
	c.s.begun.Add(1)
	return &watchedUnit{Unit: u, s: c.s}, nil
}

// watchedUnit records whether anything read or wrote through it: the use
// that opens a transaction on PostgreSQL and takes locks or reservations
// in memory.
type watchedUnit struct {
	feed.Unit
	s    *unitWatch
	used atomic.Bool
	end  sync.Once
}

func (u *watchedUnit) Context(ctx context.Context) context.Context {
	return events.ContextWithUnit(u.Unit.Context(ctx), u)
}

func (u *watchedUnit) Append(ctx context.Context, stream string, v events.ExpectedVersion, evs ...events.Event) (events.AppendResult, error) {
	u.used.Store(true)
	return u.Unit.Append(ctx, stream, v, evs...)
}

func (u *watchedUnit) ReadStream(ctx context.Context, stream string, from int64, limit int) ([]events.Envelope, error) {
	u.used.Store(true)
	return u.Unit.ReadStream(ctx, stream, from, limit)
}

func (u *watchedUnit) StreamVersion(ctx context.Context, stream string) (int64, error) {
	u.used.Store(true)
	return u.Unit.StreamVersion(ctx, stream)
}

func (u *watchedUnit) ReadAll(ctx context.Context, after events.Token, limit int) ([]events.Envelope, error) {
	u.used.Store(true)
	return u.Unit.ReadAll(ctx, after, limit)
}

func (u *watchedUnit) Head(ctx context.Context) (events.Token, error) {
	u.used.Store(true)
	return u.Unit.Head(ctx)
}

// Rows counts a write or a locked read as use. A read without a lock is
// none: it takes no lock or reservation and, on PostgreSQL, begins no
// transaction (the gate reads the instance through the unit, so that
// behind the head of a unit it uses the connection the unit holds).
func (u *watchedUnit) Rows() feed.Rows {
	return watchedRows{Rows: u.Unit.Rows(), u: u}
}

type watchedRows struct {
	feed.Rows
	u *watchedUnit
}

func (r watchedRows) Get(ctx context.Context, ns, table, key string, lock feed.Lock) (feed.Row, bool, error) {
	if lock != feed.LockNone {
		r.u.used.Store(true)
	}
	return r.Rows.Get(ctx, ns, table, key, lock)
}

func (r watchedRows) Put(ctx context.Context, ns, table, key string, value json.RawMessage, tok events.Token) error {
	r.u.used.Store(true)
	return r.Rows.Put(ctx, ns, table, key, value, tok)
}

func (r watchedRows) Delete(ctx context.Context, ns, table, key string) error {
	r.u.used.Store(true)
	return r.Rows.Delete(ctx, ns, table, key)
}

func (r watchedRows) DeleteNamespace(ctx context.Context, ns string, limit int) (int, error) {
	r.u.used.Store(true)
	return r.Rows.DeleteNamespace(ctx, ns, limit)
}

func (u *watchedUnit) Positions(ctx context.Context, names ...string) ([]events.Token, error) {
	u.used.Store(true)
	return u.Unit.Positions(ctx, names...)
}

func (u *watchedUnit) Commit(ctx context.Context, moves ...feed.Move) error {
	defer u.end.Do(func() { u.s.open.Add(-1) })
	if u.s.conflict != nil && u.s.conflict() {
		_ = u.Unit.Rollback(ctx)
		return feed.ErrConflict
	}
	return u.Unit.Commit(ctx, moves...)
}

func (u *watchedUnit) Rollback(ctx context.Context) error {
	defer u.end.Do(func() { u.s.open.Add(-1) })
	return u.Unit.Rollback(ctx)
}

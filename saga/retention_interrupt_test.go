package saga_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

var errTripped = errors.New("test: the store went away")

// tripStore is the engine's view of a store that goes away after a number
// of row deletes: from then on every row operation and every new unit
// fails, as for a process that loses its database (or is stopped) in the
// middle of a retention pass. The unit open at that moment rolls back.
type tripStore struct {
	saga.Store
	left    int // deletes still allowed once armed
	armed   bool
	tripped bool
}

// arm lets n more deletes through, then trips.
func (s *tripStore) arm(n int) { s.left, s.armed, s.tripped = n, true, false }

func (s *tripStore) disarm() { s.armed, s.tripped = false, false }

func (s *tripStore) check() error {
	if s.tripped {
		return errTripped
	}
	return nil
}

func (s *tripStore) Rows() feed.Rows { return tripRows{s.Store.Rows(), s} }

func (s *tripStore) Checkpoints() feed.CheckpointStore {
	return tripCheckpoints{s.Store.Checkpoints(), s}
}

type tripCheckpoints struct {
	feed.CheckpointStore
	s *tripStore
}

func (c tripCheckpoints) Begin(ctx context.Context) (feed.Unit, error) {
	if err := c.s.check(); err != nil {
		return nil, err
	}
	u, err := c.CheckpointStore.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return tripUnit{u, c.s}, nil
}

type tripUnit struct {
	feed.Unit
	s *tripStore
}

func (u tripUnit) Rows() feed.Rows { return tripRows{u.Unit.Rows(), u.s} }

func (u tripUnit) Commit(ctx context.Context, moves ...feed.Move) error {
	if err := u.s.check(); err != nil {
		return err
	}
	return u.Unit.Commit(ctx, moves...)
}

type tripRows struct {
	feed.Rows
	s *tripStore
}

func (r tripRows) Get(ctx context.Context, ns, table, key string, lock feed.Lock) (feed.Row, bool, error) {
	if err := r.s.check(); err != nil {
		return feed.Row{}, false, err
	}
	return r.Rows.Get(ctx, ns, table, key, lock)
}

func (r tripRows) List(ctx context.Context, ns, table string, q feed.RowQuery) ([]feed.Row, error) {
	if err := r.s.check(); err != nil {
		return nil, err
	}
	return r.Rows.List(ctx, ns, table, q)
}

func (r tripRows) Delete(ctx context.Context, ns, table, key string) error {
	if r.s.armed && !r.s.tripped {
		if r.s.left == 0 {
			r.s.tripped = true
		}
		r.s.left--
	}
	if err := r.s.check(); err != nil {
		return err
	}
	return r.Rows.Delete(ctx, ns, table, key)
}

// TestRetentionPassInterruptedMidwayCompletesLater: passes that stop at
// any delete (some in the middle of an instance's purge, some in the
// middle of the ignored records) each leave what they committed whole;
// the next passes finish the work, and the end state is that of one
// uninterrupted pass: nothing leaks, nothing is purged twice.
func TestRetentionPassInterruptedMidwayCompletesLater(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		var trip *tripStore
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) {
			c.Engine = func(ec *saga.EngineConfig) {
				ec.Retention = retention
				trip = &tripStore{Store: ec.Store}
				ec.Store = trip
			}
		}})
		// An instance with more rows than one unit of its purge deletes,
		// and more ignored messages than one unit of theirs.
		fx.Given(placed("1", 30))
		var evs []sagatest.Event
		for i := range 300 {
			evs = append(evs, ev("1", Ping{OrderID: "1", N: i}))
		}
		for i := range 250 {
			evs = append(evs, ev(fmt.Sprintf("ghost-%d", i%3), Ping{OrderID: fmt.Sprintf("ghost-%d", i%3), N: i}))
		}
		fx.Given(evs...)
		fx.Given(ev("1", StockReserved{OrderID: "1"}), ev("1", PaymentCharged{OrderID: "1"}))
		fx.ExpectStatus(orders, "1", saga.StatusCompleted)
		require.Greater(t, rowsOf(t, fx, "handled", "1")+rowsOf(t, fx, "history", "1"), 500)
		require.Equal(t, 250, tableRows(t, fx, "ignored_index"))
		fx.Clock().Advance(retention + time.Minute)

		// 501 deletes is more than any one unit makes, so every pass
		// commits something and trips in the middle of a later unit.
		interrupted, purged := 0, 0
		for {
			trip.arm(501)
			n, err := fx.Engine().PurgeEnded(ctx)
			purged += n
			if err == nil {
				break
			}
			require.ErrorIs(t, err, errTripped)
			interrupted++
			require.Less(t, interrupted, 10, "every pass must make progress")
		}
		trip.disarm()

		require.Equal(t, 1, purged, "the instance is purged once")
		require.Equal(t, []string{saga.KindPurged}, kinds(fx.History(orders, "1")))
		require.Equal(t, 1.0, testutil.ToFloat64(fx.Engine().Metrics().Purged.WithLabelValues(orders, "instance")))
		require.Equal(t, 250.0, purgedIgnored(fx))
		for _, table := range []string{"handled", "ignored", "mailbox"} {
			require.Zero(t, tableRows(t, fx, table), table)
		}
		require.Equal(t, 1, tableRows(t, fx, "history"), "the purge's own note")
		for _, table := range []string{"ended", "ignored_index", "claims"} {
			require.Zero(t, tableRows(t, fx, table), table)
		}
		require.Zero(t, purge(t, fx))
		require.GreaterOrEqual(t, interrupted, 2, "the passes stopped in the instance's purge and in the ignored records")
	})
}

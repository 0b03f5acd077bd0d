package saga_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// hookedSource runs onGet before the first locked read of an instance row
// and onPut before the first write of a request row, in the units an
// Operator opens on it.
type hookedSource struct {
	feed.Source
	getOnce, putOnce sync.Once
	onGet, onPut     func()
}

func (s *hookedSource) Checkpoints() feed.CheckpointStore {
	return hookedCheckpoints{CheckpointStore: s.Source.Checkpoints(), s: s}
}

type hookedCheckpoints struct {
	feed.CheckpointStore
	s *hookedSource
}

func (c hookedCheckpoints) Begin(ctx context.Context) (feed.Unit, error) {
	u, err := c.CheckpointStore.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return hookedUnit{Unit: u, s: c.s}, nil
}

type hookedUnit struct {
	feed.Unit
	s *hookedSource
}

func (u hookedUnit) Rows() feed.Rows { return hookedRows{Rows: u.Unit.Rows(), s: u.s} }

type hookedRows struct {
	feed.Rows
	s *hookedSource
}

func (r hookedRows) Get(ctx context.Context, ns, table, key string, lock feed.Lock) (feed.Row, bool, error) {
	if table == "instances" && lock == feed.LockUpdate && r.s.onGet != nil {
		r.s.getOnce.Do(r.s.onGet)
	}
	return r.Rows.Get(ctx, ns, table, key, lock)
}

func (r hookedRows) Put(ctx context.Context, ns, table, key string, v json.RawMessage, tok events.Token) error {
	if table == "requests" && r.s.onPut != nil {
		r.s.putOnce.Do(r.s.onPut)
	}
	return r.Rows.Put(ctx, ns, table, key, v, tok)
}

// TestRacingOperatorsDoNotReplaceEachOther: two operators (two processes)
// ask at the same moment, one to retry, one to cancel: the second asks
// after the first checked for a pending request and before it wrote its
// own. One of them is recorded, the other refused with ErrRequestPending,
// never both accepted with one silently replacing the other.
func TestRacingOperatorsDoNotReplaceEachOther(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body
		ctx := context.Background()
		handlers := catalog{"stock.reserve": true, "customer.notify": true, "stock.release": true}
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Commands = handlers }})
		fx.Given(placed("1", 30))
		fx.When(ev("1", StockReserved{OrderID: "1"})).ExpectStatus(orders, "1", saga.StatusFailed) // retryable

		locking := make(chan struct{})
		otherSrc := &hookedSource{Source: fx.Store(), onGet: func() { close(locking) }}
		other, err := saga.NewOperator(&saga.OperatorConfig{Source: otherSrc, Clock: fx.Clock()})
		require.NoError(t, err)
		var (
			cancelReq saga.Request
			cancelErr error
		)
		done := make(chan struct{})
		src := &hookedSource{Source: fx.Store(), onPut: func() {
			go func() {
				defer close(done)
				cancelReq, cancelErr = other.RequestCancel(ctx, orders, "1", "the other operator's cancel")
			}()
			// The other operator's unit is open and about to lock the
			// instance (on PostgreSQL it waits for this unit's lock).
			<-locking
		}}
		op, err := saga.NewOperator(&saga.OperatorConfig{Source: src, Clock: fx.Clock()})
		require.NoError(t, err)

		retryReq, retryErr := op.RequestRetry(ctx, orders, "1")
		<-done
		pending, ok, err := op.Pending(ctx, orders, "1")
		require.NoError(t, err)
		require.True(t, ok, "one request is recorded")
		switch {
		case retryErr == nil:
			require.ErrorIs(t, cancelErr, saga.ErrRequestPending, "the retry was recorded first")
			require.Equal(t, retryReq, pending)
		case cancelErr == nil:
			require.ErrorIs(t, retryErr, saga.ErrRequestPending, "the cancel was recorded first")
			require.Equal(t, cancelReq, pending)
		default:
			t.Fatalf("both refused: retry %v, cancel %v", retryErr, cancelErr)
		}
	})
}

package saga_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// hookStore runs a hook right after the engine lists the parked index
// (outside any unit), as another process's operator call landing between
// the driver's listing and its per-instance unit would.
type hookStore struct {
	saga.Store
	afterParkedList atomic.Pointer[func()]
}

type hookRows struct {
	feed.Rows
	s *hookStore
}

func (s *hookStore) Rows() feed.Rows { return hookRows{Rows: s.Store.Rows(), s: s} }

func (r hookRows) List(ctx context.Context, ns, table string, q feed.RowQuery) ([]feed.Row, error) {
	rows, err := r.Rows.List(ctx, ns, table, q)
	if table == "parked" {
		if f := r.s.afterParkedList.Swap(nil); f != nil {
			(*f)()
		}
	}
	return rows, err
}

// TestRetryOfAStuckStepIsNotUndoneByAPassInFlight: Engine.Retry of a
// stuck step restarts its stuck clock. A parked-step pass that listed the
// index before the retry (another process's, say) must not mark the step
// stuck again at once: what it listed is checked again under the lock.
func TestRetryOfAStuckStepIsNotUndoneByAPassInFlight(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		var hs *hookStore
		fx := newFixture(t, mk, setup{gated: true, config: func(c *sagatest.Config) {
			inner := c.Store
			if inner == nil {
				inner = newStore(t, nil)
				// the fixture's memstore would use its clock; the default
				// one is fine for this test's purpose
			}
			hs = &hookStore{Store: inner}
			c.Store = hs
		}})
		eng := fx.Engine()
		fx.HoldModel(summaryModel)
		fx.Given(placed("1", 30), ev("1", StockReserved{OrderID: "1"}))
		fx.ExpectParked(orders, "1", summaryModel)
		fx.Advance(saga.DefaultStuckAfter + time.Second)
		require.True(t, fx.Instance(orders, "1").Stuck)

		var retryErr error
		hook := func() { retryErr = eng.Retry(ctx, orders, "1") }
		hs.afterParkedList.Store(&hook)
		_, err := eng.RunParked(ctx)
		require.NoError(t, err)
		require.NoError(t, retryErr, "the operator's retry succeeded")

		in := fx.Instance(orders, "1")
		require.False(t, in.Stuck, "a step retried %s ago is reported stuck again (parked since %s)", fx.Clock().Now().Sub(in.ParkedSince), in.ParkedSince)
	})
}

package saga_test

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
)

// TestCancelCountsTheMessagesItDrops: converge_saga_ignored_total{ended}
// counts the messages an instance will never take, so a cancel that drops
// a parked step and the messages queued behind it adds them all, as the
// instance's history says.
func TestCancelCountsTheMessagesItDrops(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 23))
		queued := 1 + rng.IntN(5)
		fx := newFixture(t, mk, setup{gated: true})
		fx.HoldModel(summaryModel)
		fx.When(placed("1", 30), ev("1", StockReserved{OrderID: "1"}))
		fx.ExpectCommands(ReserveStock{OrderID: "1"})
		fx.ExpectParked(orders, "1", summaryModel)
		for i := range queued {
			fx.When(ev("1", Ping{OrderID: "1", N: i}))
		}
		require.Equal(t, int64(queued), fx.Instance(orders, "1").Queued)
		ignored := fx.Engine().Metrics().Ignored.WithLabelValues(orders, "ended")
		before := testutil.ToFloat64(ignored)
		require.NoError(t, fx.Engine().Cancel(context.Background(), orders, "1", "not needed"))
		fx.ExpectStatus(orders, "1", saga.StatusCancelled)
		require.Equal(t, float64(queued+1), testutil.ToFloat64(ignored)-before, "the parked step and %d queued messages", queued)
	})
}

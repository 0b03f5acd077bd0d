package converge_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// TestGateStatsCountCaughtUpModelsAsReached: a client that starts on a
// store whose read model already reflects every order counts none of the
// steps it gates as Behind. The tracker reported a model whose stored
// position it had not read yet as behind, so the first gate after a start
// counted a caught-up model as Behind.
func TestGateStatsCountCaughtUpModelsAsReached(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		seed := rand.Uint64()
		n := 1 + rand.New(rand.NewPCG(seed, seed)).IntN(6)
		msg := fmt.Sprintf("seed %d, %d orders", seed, n)

		// A first client runs only the projection, up to every order.
		var first *converge.Client
		cfg := shop(store, func(name string) *projections.View { return first.Projections().View(name) })
		cfg.Sagas, cfg.Commands = nil, nil
		first, err := converge.NewClient(store, cfg)
		require.NoError(t, err)
		require.NoError(t, first.Start(ctx))
		var last events.Token
		for i := range n {
			id := fmt.Sprint(i)
			res, err := first.Appender().Append(ctx, "order-"+id, events.NoStream, events.Event{
				Data: OrderPlaced{OrderID: id, Cents: 100}, Metadata: events.Metadata{CorrelationID: id},
			})
			require.NoError(t, err)
			last = res.Token
		}
		// Waits up to the Tracker's cap, not its 2 s default: on a shared
		// server another test's open transaction holds every feed reader
		// of the database back for a while.
		wctx, cancel := context.WithTimeout(ctx, consistency.DefaultMaxTimeout)
		defer cancel()
		st, err := first.Tracker().Wait(wctx, last, "order_status")
		require.NoError(t, err)
		require.False(t, st.Stale, msg)
		require.NoError(t, first.Stop(ctx))

		// The second runs the sagas: every gate finds the model caught up.
		second := newShop(t, store)
		require.NoError(t, second.Start(ctx))
		defer func() { require.NoError(t, second.Stop(ctx)) }()
		st, err = second.Tracker().Wait(wctx, last, converge.DefaultSagaProcessor)
		require.NoError(t, err)
		require.False(t, st.Stale, msg)
		gs := second.GateStats()
		require.Equal(t, int64(n), gs.Gated, "%s: every order's first step reads order_status", msg)
		require.Zero(t, gs.Behind, "%s: order_status had reached every order before the sagas started", msg)
	})
}

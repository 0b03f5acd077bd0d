package converge_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
)

// TestClientSagasSeeEventsStoredUnderAnAlias: after a type rename
// (Registry.Alias), events stored under the old name still start and
// drive the client's sagas, as the saga fixture (which filters no types)
// says they do. The client's saga processor filters the feed by type, so
// it must list the aliases too.
func TestClientSagasSeeEventsStoredUnderAnAlias(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		seed := rand.Uint64()
		t.Logf("seed %d", seed)
		r := rand.New(rand.NewPCG(seed, seed))
		old := fmt.Sprintf("shop.order_created_v%d", r.IntN(100))
		require.NoError(t, store.Registry().Alias(old, "shop.order_placed"))

		flow := saga.New[struct{}]("alias_flow", nil)
		saga.StartOn(flow, func(e OrderPlaced, _ events.Envelope) string { return e.OrderID },
			func(*saga.Step[struct{}], OrderPlaced) error { return nil })
		client, err := converge.NewClient(store, &converge.Config{Sagas: []saga.Definition{flow}, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		start(t, client)

		n := 1 + r.IntN(5)
		for i := range n {
			typ := "shop.order_placed"
			if i == 0 || r.IntN(2) == 0 { // at least one under the old name
				typ = old
			}
			raw := events.Raw{Type: typ, Payload: fmt.Appendf(nil, `{"order_id":"%d","cents":3}`, i)}
			_, err := store.Append(ctx, fmt.Sprintf("order-%d", i), events.NoStream, events.Event{Data: raw})
			require.NoError(t, err)
		}
		require.Eventually(t, func() bool {
			list, err := client.Sagas().List(ctx, saga.Filter{Saga: "alias_flow"})
			return err == nil && len(list) == n
		}, 10*time.Second, 10*time.Millisecond, "an event stored under the old type name started no saga")
	})
}

package saga_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
)

// errCrash stands for a process dying after the handler ran and before its
// unit committed.
var errCrash = errors.New("crash before commit")

// TestRandomisedDeliveries runs several order instances under adversarial
// delivery, one seed at a time: messages of different instances in random
// order, crashes before a unit commits, duplicated deliveries. Whatever
// the schedule, every instance completes and sends each command exactly
// once.
func TestRandomisedDeliveries(t *testing.T) {
	t.Parallel()
	forEachSeed(t, 20, 4, runSchedule)
}

func runSchedule(t *testing.T, mk storeMaker, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	b := newBare(t, mk)
	ctx := context.Background()
	const n = 5
	var pending []events.Envelope
	for i := range n {
		id := fmt.Sprint(i)
		pending = append(pending, b.append(t, "order-"+id, OrderPlaced{OrderID: id, Total: 10}))
		for p := range 2 {
			pending = append(pending, b.append(t, "order-"+id, Ping{OrderID: id, N: p}))
		}
	}
	answered := map[string]bool{}
	var seen events.Token
	for steps := 0; len(pending) > 0; steps++ {
		require.Less(t, steps, 10_000, "seed %d does not finish", seed)
		i := rng.IntN(len(pending))
		env := pending[i]
		if rng.IntN(5) == 0 {
			err := drive.Unit(ctx, b.store, 0, func(ctx context.Context) error {
				if err := b.engine.Handle(ctx, env); err != nil {
					return err
				}
				return errCrash
			})
			require.ErrorIs(t, err, errCrash, "seed %d", seed)
			continue // delivered again later
		}
		b.deliver(t, env)
		if rng.IntN(3) == 0 {
			b.deliver(t, env) // a duplicate
		}
		pending = slices.Delete(pending, i, i+1)
		// Play the services: answer each new command once.
		for {
			batch, err := drive.Read(ctx, b.store, seen, feed.Filter{}, 100)
			require.NoError(t, err)
			if len(batch.Events) == 0 {
				break
			}
			for _, c := range batch.Events {
				seen = c.Token
				if answered[c.ID] {
					continue
				}
				answered[c.ID] = true
				switch c.Type {
				case "stock.reserve":
					pending = append(pending, b.append(t, "stock-"+c.Metadata.CorrelationID, StockReserved{OrderID: c.Metadata.CorrelationID}))
				case "payment.charge":
					pending = append(pending, b.append(t, "payment-"+c.Metadata.CorrelationID, PaymentCharged{OrderID: c.Metadata.CorrelationID}))
				}
			}
		}
	}
	ids := b.commandIDs(t)
	for _, typ := range []string{"stock.reserve", "payment.charge", "order.ship"} {
		require.Len(t, ids[typ], n, "seed %d: %s once per instance", seed, typ)
	}
	list, err := b.engine.List(ctx, saga.Filter{})
	require.NoError(t, err)
	require.Len(t, list, n)
	for _, in := range list {
		// A ping that arrived after completion is ignored; the rest are kept.
		require.Equal(t, saga.StatusCompleted, in.Status, "seed %d: instance %s", seed, in.ID)
	}
}

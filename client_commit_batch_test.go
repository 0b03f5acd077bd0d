package converge_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/projections"
	"github.com/converge-es/converge/saga"
)

// unitSizes records, for one consumer, the events it was handed and the
// largest unit of work any of them came in (feed.UnitEvents).
type unitSizes struct {
	mu      sync.Mutex
	seen    map[string]bool
	largest int
}

func (u *unitSizes) record(ctx context.Context, id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.seen == nil {
		u.seen = map[string]bool{}
	}
	u.seen[id] = true
	u.largest = max(u.largest, len(feed.UnitEvents(ctx)))
}

func (u *unitSizes) get() (seen, largest int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen), u.largest
}

// TestCommitBatchReachesEveryConsumer: Config.CommitBatch bounds the units
// of work of the projections, the saga processor and each command handler
// alike, and is DefaultCommitBatch (100) when left zero; 1 commits every
// event alone. Each consumer starts behind a backlog far larger than the
// bound (and reads it in pages larger still), so each fills its units up
// to the bound, never past it.
func TestCommitBatchReachesEveryConsumer(t *testing.T) {
	t.Parallel()
	require.Equal(t, 100, converge.DefaultCommitBatch)
	for _, tt := range []struct {
		name string
		set  int
		want int
	}{
		{"Default", 0, converge.DefaultCommitBatch},
		{"Set", 7, 7},
		{"One", 1, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			store, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
			require.NoError(t, err)
			t.Cleanup(func() { _ = store.Close() })

			// The backlog: orders for the projection and the saga, and
			// commands for the handler, all stored before the client starts.
			n := 2*tt.want + 50
			for i := range n {
				id := fmt.Sprint(i)
				_, err := store.Append(ctx, "order-"+id, events.NoStream, events.Event{
					Data: OrderPlaced{OrderID: id, Cents: i}, Metadata: events.Metadata{CorrelationID: id},
				})
				require.NoError(t, err)
				_, err = store.Append(ctx, command.StreamFor("shop.charge_card", id), events.AnyVersion, events.Event{
					Data: ChargeCard{OrderID: id, Cents: i}, Metadata: events.Metadata{CorrelationID: id},
				})
				require.NoError(t, err)
			}

			var proj, sagas, cmds unitSizes
			status := projections.New("batch_status", nil)
			projections.On(status, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderPlaced) error {
				proj.record(ctx, e.OrderID)
				return tx.Table("orders").Put(ctx, e.OrderID, "placed")
			})
			flow := saga.New[struct{}]("batched", nil)
			saga.StartOn(flow, func(e OrderPlaced, _ events.Envelope) string { return e.OrderID },
				func(s *saga.Step[struct{}], e OrderPlaced) error {
					sagas.record(s.Context(), e.OrderID)
					s.Complete()
					return nil
				})
			card := events.Aggregate[int]{Apply: func(n int, _ any) (int, error) { return n + 1, nil }}
			charge := command.Handle("charge-card", store, card, func(c ChargeCard) string { return "card-" + c.OrderID },
				func(ctx context.Context, _ int, c ChargeCard) ([]any, error) {
					cmds.record(ctx, c.OrderID)
					return []any{CardCharged{OrderID: c.OrderID}}, nil
				})
			client, err := converge.NewClient(store, &converge.Config{
				Projections: []*projections.Projection{status},
				Sagas:       []saga.Definition{flow},
				Commands:    []cqrs.CommandHandler{charge},
				// One saga partition, so the whole backlog is in it.
				SagaPartitions: 1,
				CommitBatch:    tt.set,
				// Pages larger than any unit: the bound is CommitBatch's.
				Subscriber: feed.SubscriberConfig{LeaseTTL: time.Minute, BatchSize: 4 * n},
				Logger:     slog.New(slog.DiscardHandler),
			})
			require.NoError(t, err)
			run(t, client)

			for _, c := range []struct {
				name string
				u    *unitSizes
			}{{"the projection", &proj}, {"the saga processor", &sagas}, {"the command handler", &cmds}} {
				require.EventuallyWithT(t, func(col *assert.CollectT) {
					seen, _ := c.u.get()
					assert.Equal(col, n, seen)
				}, time.Minute, 5*time.Millisecond, "%s never took the whole backlog", c.name)
				_, largest := c.u.get()
				require.Equal(t, tt.want, largest, "%s: largest unit of work", c.name)
			}
		})
	}
}

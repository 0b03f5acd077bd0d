package converge_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/projections"
	"github.com/converge-es/converge/saga"
)

// TestGateTimeoutBoundsTheWaitBeforeAPark: Config.GateTimeout is how long
// a saga step waits for the read models it reads before it is parked, and
// feed.DefaultGateTimeout when left zero. The read model here is held
// back until the test lets it go, so the step's wait runs to the bound:
// it lasts the bound (as the engine's wait histogram measured it), then
// the step is parked waiting for that model, and runs once the model
// catches up.
func TestGateTimeoutBoundsTheWaitBeforeAPark(t *testing.T) {
	t.Parallel()
	// slack is how far past the bound the measured wait may run (the
	// gate's timer firing late on a loaded machine).
	const slack = 500 * time.Millisecond
	for _, tt := range []struct {
		name string
		set  time.Duration
		want time.Duration
	}{
		{"Default", 0, feed.DefaultGateTimeout},
		{"Set", 4 * feed.DefaultGateTimeout, 4 * feed.DefaultGateTimeout},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			store, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
			require.NoError(t, err)
			t.Cleanup(func() { _ = store.Close() })

			held, release := make(chan struct{}, 1), make(chan struct{})
			model := projections.New("held_status", nil)
			projections.On(model, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderPlaced) error {
				select {
				case held <- struct{}{}:
				default:
				}
				select {
				case <-release:
				case <-ctx.Done():
					return ctx.Err()
				}
				return tx.Table("orders").Put(ctx, e.OrderID, "placed")
			})
			flow := saga.New[struct{}]("gated", nil)
			saga.StartOn(flow, func(e OrderPlaced, _ events.Envelope) string { return e.OrderID },
				func(s *saga.Step[struct{}], _ OrderPlaced) error { s.Complete(); return nil },
				saga.Reads("held_status"))
			client, err := converge.NewClient(store, &converge.Config{
				Projections: []*projections.Projection{model},
				Sagas:       []saga.Definition{flow},
				GateTimeout: tt.set,
				Subscriber:  feed.SubscriberConfig{LeaseTTL: time.Minute},
				Logger:      slog.New(slog.DiscardHandler),
			})
			require.NoError(t, err)
			run(t, client)
			released := false
			defer func() {
				if !released {
					close(release)
				}
			}()

			_, err = client.Appender().Append(ctx, "order-1", events.NoStream, events.Event{Data: OrderPlaced{OrderID: "1", Cents: 1}})
			require.NoError(t, err)
			select {
			case <-held:
			case <-ctx.Done():
				t.Fatal("the read model never took the order")
			}
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				tl, err := client.Sagas().Show(ctx, "gated", "1")
				require.NoError(c, err)
				assert.Equal(c, saga.StatusParked, tl.Info.Status)
				assert.Equal(c, []string{"held_status"}, tl.Info.Waiting)
			}, 30*time.Second, 5*time.Millisecond, "the step was never parked")

			m := client.Sagas().Metrics()
			require.InDelta(t, 1, testutil.ToFloat64(m.Waits.WithLabelValues("false")), 0, "one wait, which ran out")
			require.Zero(t, testutil.ToFloat64(m.Waits.WithLabelValues("true")))
			waited := waitSeconds(t, m, "gated")
			require.GreaterOrEqual(t, waited, tt.want, "the step was parked before the gate timeout")
			require.Less(t, waited, tt.want+slack, "the step waited well past the gate timeout")
			require.Equal(t, converge.GateStats{Gated: 1, Behind: 1}, client.GateStats())

			close(release)
			released = true
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				tl, err := client.Sagas().Show(ctx, "gated", "1")
				require.NoError(c, err)
				assert.Equal(c, saga.StatusCompleted, tl.Info.Status)
			}, 30*time.Second, 5*time.Millisecond, "the parked step never ran once its read model caught up")
		})
	}
}

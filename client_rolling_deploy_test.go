package converge_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/saga"
)

type (
	rdPlaced  struct{ OrderID string }
	rdCharged struct{ OrderID string }
)

// TestClientStartTakesOverFromAnOlderBuild: a newer build adds a saga
// handler and starts beside an older build's client, which delivers the
// sagas. Once the newer client's Start returns, an event only it handles,
// appended at once, reaches its handler: Start waited until the older
// build's process stood by, rather than leave it to filter the event out
// and move the shared checkpoint past it.
func TestClientStartTakesOverFromAnOlderBuild(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"memory", "postgres"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			reg := events.NewRegistry()
			events.Register[rdPlaced](reg, "rd.placed")
			events.Register[rdCharged](reg, "rd.charged")
			var store converge.Store
			if name == "memory" {
				st, err := memstore.New(&memstore.Config{Registry: reg})
				require.NoError(t, err)
				t.Cleanup(func() { _ = st.Close() })
				store = st
			} else {
				db := pgtest.New(t, &pgtest.Config{MaxConns: 12})
				st, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, Registry: reg})
				require.NoError(t, err)
				t.Cleanup(func() { _ = st.Close() })
				store = st
			}
			build := func(charges bool) *converge.Client {
				s := saga.New[struct{}]("shipping", nil)
				saga.StartOn(s, func(e rdPlaced, _ events.Envelope) string { return e.OrderID },
					func(*saga.Step[struct{}], rdPlaced) error { return nil })
				if charges {
					saga.On(s, func(e rdCharged, _ events.Envelope) string { return e.OrderID },
						func(st *saga.Step[struct{}], _ rdCharged) error { st.Complete(); return nil })
				}
				cl, err := converge.NewClient(store, &converge.Config{Sagas: []saga.Definition{s}, Logger: slog.New(slog.DiscardHandler)})
				require.NoError(t, err)
				return cl
			}
			older := build(false)
			require.NoError(t, older.Start(ctx))
			t.Cleanup(func() { _ = older.Stop(context.Background()) })
			_, err := store.Append(ctx, "order-1", events.NoStream, events.Event{Data: rdPlaced{OrderID: "1"}})
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				tl, err := older.Sagas().Show(ctx, "shipping", "1")
				return err == nil && tl.Info.Status == saga.StatusRunning
			}, 10*time.Second, 5*time.Millisecond)

			newer := build(true)
			require.NoError(t, newer.Start(ctx))
			t.Cleanup(func() { _ = newer.Stop(context.Background()) })
			_, err = store.Append(ctx, "payment-1", events.NoStream, events.Event{Data: rdCharged{OrderID: "1"}})
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				tl, err := newer.Sagas().Show(ctx, "shipping", "1")
				return err == nil && tl.Info.Status == saga.StatusCompleted
			}, 10*time.Second, 5*time.Millisecond, "the newer build's event was skipped")
		})
	}
}

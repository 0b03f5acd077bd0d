package converge_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/clocktest"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/saga"
)

type (
	rdPlaced  struct{ OrderID string }
	rdHeld    struct{ OrderID string }
	rdCharged struct{ OrderID string }
)

// rdStore is a store of the given kind ("memory" or "postgres") with the
// rolling-deploy tests' events registered.
func rdStore(t *testing.T, kind string) converge.Store {
	t.Helper()
	reg := events.NewRegistry()
	events.Register[rdPlaced](reg, "rd.placed")
	events.Register[rdHeld](reg, "rd.held")
	events.Register[rdCharged](reg, "rd.charged")
	if kind == "memory" {
		st, err := memstore.New(&memstore.Config{Registry: reg})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	db := pgtest.New(t, &pgtest.Config{MaxConns: 12})
	st, err := pgstore.New(t.Context(), db.Pool, &pgstore.Config{Schema: db.Schema, Registry: reg})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

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
			store := rdStore(t, name)
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

// TestOlderBuildsDriverLeavesTheNewerBuildsWorkAlone: while an older
// build's client stands by for a newer one, its parked-step driver runs
// nothing (the engine follows the sagas' processor, Config wires it): a
// message queued behind a step waiting for its retry, which only the
// newer build handles, is run by the newer build once the retry time
// comes, not dropped as "no longer handled" by the older one. The older
// driver is made to pass first (RunParked on a virtual clock).
func TestOlderBuildsDriverLeavesTheNewerBuildsWorkAlone(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"memory", "postgres"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			store := rdStore(t, name)
			clock := clocktest.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
			var held atomic.Int32
			build := func(charges bool) *converge.Client {
				s := saga.New[struct{}]("shipping", nil)
				saga.StartOn(s, func(e rdPlaced, _ events.Envelope) string { return e.OrderID },
					func(*saga.Step[struct{}], rdPlaced) error { return nil })
				saga.On(s, func(e rdHeld, _ events.Envelope) string { return e.OrderID },
					func(*saga.Step[struct{}], rdHeld) error {
						if held.Add(1) == 1 {
							return saga.RetryAfter(10 * time.Minute)
						}
						return nil
					})
				if charges {
					saga.On(s, func(e rdCharged, _ events.Envelope) string { return e.OrderID },
						func(st *saga.Step[struct{}], _ rdCharged) error { st.Complete(); return nil })
				}
				cl, err := converge.NewClient(store, &converge.Config{Sagas: []saga.Definition{s}, Clock: clock, Logger: slog.New(slog.DiscardHandler)})
				require.NoError(t, err)
				return cl
			}
			older := build(false)
			require.NoError(t, older.Start(ctx))
			t.Cleanup(func() { _ = older.Stop(context.Background()) })
			newer := build(true)
			require.NoError(t, newer.Start(ctx))
			t.Cleanup(func() { _ = newer.Stop(context.Background()) })
			require.Eventually(t, func() bool {
				o, _ := older.SagaProcessor().IsAssigned()
				n, _ := newer.SagaProcessor().IsAssigned()
				return !o && n
			}, 10*time.Second, 5*time.Millisecond, "the older build's process does not stand by")

			info := func() saga.Info {
				tl, err := newer.Sagas().Show(ctx, "shipping", "1")
				if err != nil {
					return saga.Info{}
				}
				return tl.Info
			}
			for _, ev := range []any{rdPlaced{OrderID: "1"}, rdHeld{OrderID: "1"}} {
				_, err := store.Append(ctx, "order-1", events.AnyVersion, events.Event{Data: ev})
				require.NoError(t, err)
			}
			require.Eventually(t, func() bool { return info().Status == saga.StatusParked }, 10*time.Second, 5*time.Millisecond)
			_, err := store.Append(ctx, "payment-1", events.NoStream, events.Event{Data: rdCharged{OrderID: "1"}})
			require.NoError(t, err)
			require.Eventually(t, func() bool { return info().Queued == 1 }, 10*time.Second, 5*time.Millisecond)

			clock.Advance(11 * time.Minute)
			n, err := older.Sagas().RunParked(ctx)
			require.NoError(t, err)
			require.Zero(t, n, "the older build's driver ran a step while its process stands by")
			_, err = newer.Sagas().RunParked(ctx)
			require.NoError(t, err)
			require.Eventually(t, func() bool { return info().Status == saga.StatusCompleted }, 10*time.Second, 5*time.Millisecond)
			tl, err := newer.Sagas().Show(ctx, "shipping", "1")
			require.NoError(t, err)
			for _, h := range tl.History {
				require.NotEqual(t, saga.KindIgnored, h.Kind, "a message was dropped: %s", h.Detail)
			}
		})
	}
}

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
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/internal/clocktest"
	"github.com/converge-es/converge/saga"
)

// TestSagaRetentionPurgesEndedInstances: Config.SagaRetention is how long
// an ended saga instance keeps its history before it is purged, leaving a
// tombstone that still recognises late messages; it is
// saga.DefaultRetention (7 days) when left zero, and a negative value
// keeps everything. The client's Clock is the engine's: the test moves it
// to either side of the retention and runs the sweep
// (Engine.PurgeEnded).
func TestSagaRetentionPurgesEndedInstances(t *testing.T) {
	t.Parallel()
	require.Equal(t, 7*24*time.Hour, saga.DefaultRetention)
	for _, tt := range []struct {
		name string
		set  time.Duration
		keep time.Duration // how long the history stays; 0: for ever
	}{
		{"Default", 0, saga.DefaultRetention},
		{"Set", 90 * time.Minute, 90 * time.Minute},
		{"Negative", -1, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			clock := clocktest.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
			store, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
			require.NoError(t, err)
			t.Cleanup(func() { _ = store.Close() })
			flow := saga.New[struct{}]("kept", nil)
			saga.StartOn(flow, func(e OrderPlaced, _ events.Envelope) string { return e.OrderID },
				func(s *saga.Step[struct{}], _ OrderPlaced) error { s.Complete(); return nil })
			client, err := converge.NewClient(store, &converge.Config{
				Sagas:         []saga.Definition{flow},
				SagaRetention: tt.set,
				Clock:         clock,
				Logger:        slog.New(slog.DiscardHandler),
			})
			require.NoError(t, err)
			run(t, client)
			sagas := client.Sagas()

			place := func(stream string) {
				t.Helper()
				_, err := client.Appender().Append(ctx, stream, events.NoStream, events.Event{
					Data: OrderPlaced{OrderID: "1", Cents: 5}, Metadata: events.Metadata{CorrelationID: "1"},
				})
				require.NoError(t, err)
			}
			place("order-1")
			var ended saga.Timeline
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				ended, err = sagas.Show(ctx, "kept", "1")
				require.NoError(c, err)
				assert.Equal(c, saga.StatusCompleted, ended.Info.Status)
			}, 30*time.Second, 5*time.Millisecond)
			require.NotEmpty(t, ended.History)
			require.True(t, ended.Info.Purged.IsZero())

			kept := func(msg string) {
				t.Helper()
				_, err := sagas.PurgeEnded(ctx)
				require.NoError(t, err)
				tl, err := sagas.Show(ctx, "kept", "1")
				require.NoError(t, err)
				require.True(t, tl.Info.Purged.IsZero(), "%s: purged at %s", msg, tl.Info.Purged)
				require.Equal(t, ended.History, tl.History, msg)
				require.JSONEq(t, string(ended.Info.State), string(tl.Info.State), msg)
			}
			if tt.keep == 0 {
				clock.Advance(100 * 365 * 24 * time.Hour)
				kept("a negative retention keeps an ended instance a century on")
				return
			}
			clock.Advance(tt.keep - time.Second)
			kept("a second before the retention ran out")

			clock.Advance(time.Second)
			_, err = sagas.PurgeEnded(ctx) // or the engine's own sweep, meanwhile
			require.NoError(t, err)
			tl, err := sagas.Show(ctx, "kept", "1")
			require.NoError(t, err)
			require.Equal(t, clock.Now(), tl.Info.Purged.UTC(), "purged once the retention ran out")
			require.Equal(t, saga.StatusCompleted, tl.Info.Status, "the tombstone keeps the status")
			require.Nil(t, tl.Info.State)
			require.Len(t, tl.History, 1, "the history is gone, but for a note of the purge")
			require.Equal(t, saga.KindPurged, tl.History[0].Kind)
			require.Contains(t, tl.History[0].Detail, "Retention "+tt.keep.String())
			require.InDelta(t, 1, testutil.ToFloat64(sagas.Metrics().Purged.WithLabelValues("kept", "instance")), 0)

			// The tombstone still recognises the id: a late start event
			// is ignored, never starting the instance again.
			place("order-1-again")
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				assert.InDelta(c, 1, testutil.ToFloat64(sagas.Metrics().Ignored.WithLabelValues("kept", "ended")), 0)
			}, 30*time.Second, 5*time.Millisecond, "the late order was not ignored as for an ended instance")
			tl, err = sagas.Show(ctx, "kept", "1")
			require.NoError(t, err)
			require.Equal(t, saga.StatusCompleted, tl.Info.Status)
			require.False(t, tl.Info.Purged.IsZero())
		})
	}
}

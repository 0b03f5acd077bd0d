package converge_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/internal/clocktest"
	"github.com/converge-es/converge/saga"
)

// reminder starts on an order and completes when its one-hour timer
// fires.
func reminder() saga.Definition {
	flow := saga.New[struct{}]("reminder", nil)
	saga.StartOn(flow, func(e OrderPlaced, _ events.Envelope) string { return e.OrderID },
		func(s *saga.Step[struct{}], _ OrderPlaced) error { s.Schedule("remind", time.Hour); return nil })
	saga.OnTimeout(flow, "remind", func(s *saga.Step[struct{}], _ saga.Timeout) error { s.Complete(); return nil })
	return flow
}

// TestClockIsTheSagasTimeSource: Config.Clock is the time source of the
// sagas: an instance is created at the clock's time, its timers fall due
// by it, and they fire once it has moved past them, however little real
// time went by.
func TestClockIsTheSagasTimeSource(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	t0 := time.Date(2031, 7, 1, 9, 0, 0, 0, time.UTC)
	clock := clocktest.New(t0)
	store, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	client, err := converge.NewClient(store, &converge.Config{
		Sagas:  []saga.Definition{reminder()},
		Clock:  clock,
		Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	run(t, client)
	sagas := client.Sagas()

	_, err = client.Appender().Append(ctx, "order-1", events.NoStream, events.Event{Data: OrderPlaced{OrderID: "1"}})
	require.NoError(t, err)
	var info saga.Info
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		tl, err := sagas.Show(ctx, "reminder", "1")
		require.NoError(c, err)
		info = tl.Info
		assert.Contains(c, info.Timers, "remind")
	}, 30*time.Second, 5*time.Millisecond)
	require.Equal(t, t0, info.Created.UTC())
	require.Equal(t, t0.Add(time.Hour), info.Timers["remind"].UTC(), "the timer is due an hour after the clock's now")

	clock.Advance(time.Hour - time.Second)
	n, err := sagas.FireDue(ctx)
	require.NoError(t, err)
	require.Zero(t, n, "a timer fired before the clock reached it")
	clock.Advance(time.Second)
	_, err = sagas.FireDue(ctx) // or the engine's timer loop, meanwhile
	require.NoError(t, err)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		tl, err := sagas.Show(ctx, "reminder", "1")
		require.NoError(c, err)
		assert.Equal(c, saga.StatusCompleted, tl.Info.Status)
		assert.Equal(c, t0.Add(time.Hour), tl.Info.Ended.UTC())
	}, 30*time.Second, 5*time.Millisecond, "the timer did not fire once the clock passed it")
}

// TestClockDefaultsToTheSystemClock: with Config.Clock left nil the sagas
// run on the wall clock.
func TestClockDefaultsToTheSystemClock(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	store, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	client, err := converge.NewClient(store, &converge.Config{
		Sagas:  []saga.Definition{reminder()},
		Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	run(t, client)

	before := time.Now()
	_, err = client.Appender().Append(ctx, "order-1", events.NoStream, events.Event{Data: OrderPlaced{OrderID: "1"}})
	require.NoError(t, err)
	var info saga.Info
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		tl, err := client.Sagas().Show(ctx, "reminder", "1")
		require.NoError(c, err)
		info = tl.Info
		assert.Contains(c, info.Timers, "remind")
	}, 30*time.Second, 5*time.Millisecond)
	after := time.Now()
	require.WithinRange(t, info.Created, before, after)
	require.WithinRange(t, info.Timers["remind"], before.Add(time.Hour), after.Add(time.Hour))
}

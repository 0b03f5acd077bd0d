package saga_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/clocktest"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
)

// TestTwoEnginesFireATimerOnce runs two engines (two processes' worth)
// on one store: both find the same timer due at once and fire it, and
// both take every event of the feed, as partitions changing hands may
// make them. The timer's firing is appended once, its OnTimeout step runs
// once and sends its command once.
func TestTwoEnginesFireATimerOnce(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		store := newStore(t, mk)
		clock := clocktest.New(time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC))
		engines := make([]*saga.Engine, 2)
		for i := range engines {
			eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{orderSaga(false)}, Clock: clock})
			require.NoError(t, err)
			engines[i] = eng
		}
		const n = 5
		var pos events.Token
		// both hands every new event of the feed to both engines, at once.
		both := func() {
			handleNew(t, store, &pos, func(env events.Envelope) error {
				return onBoth(engines, func(eng *saga.Engine) error {
					return drive.Unit(ctx, store, 100, func(ctx context.Context) error { return eng.Handle(ctx, env) })
				})
			})
		}
		for i := range n {
			id := string(rune('a' + i))
			_, err := store.Append(ctx, "order-"+id, events.AnyVersion, events.Event{Data: OrderPlaced{OrderID: id, Total: 1}})
			require.NoError(t, err)
		}
		both()
		clock.Advance(31 * time.Minute)
		require.NoError(t, onBoth(engines, func(eng *saga.Engine) error {
			_, err := eng.FireDue(ctx)
			return err
		}))
		both()

		all, err := drive.Read(ctx, store, events.Token{}, feed.Filter{Types: []string{saga.TimerFiredType}}, 1000)
		require.NoError(t, err)
		require.Len(t, all.Events, n, "each timer's firing is appended once")
		sent := bare{store: store}.commandIDs(t)
		require.Len(t, sent["customer.notify"], n, "each timeout step sends its compensation once")
		require.Len(t, sent["stock.reserve"], n)
		total := 0.0
		for _, eng := range engines {
			total += testutil.ToFloat64(eng.Metrics().TimersFired.WithLabelValues(orders))
		}
		require.Equal(t, float64(n), total, "timers fired, counted over both engines")
		for i := range n {
			tl, err := engines[0].Show(ctx, orders, string(rune('a'+i)))
			require.NoError(t, err)
			require.Equal(t, saga.StatusFailed, tl.Info.Status)
			require.Equal(t, "payment timed out", tl.Info.Reason)
			require.Equal(t, 1, countKind(tl, saga.KindTimerFired), "the timeout step ran once")
		}
		next, ok, err := engines[1].NextTimer(ctx)
		require.NoError(t, err)
		require.False(t, ok, "no timer left (next %s)", next)
	})
}

// onBoth runs fn for each engine at once and returns the first error.
func onBoth(engines []*saga.Engine, fn func(*saga.Engine) error) error {
	errs := make([]error, len(engines))
	var wg sync.WaitGroup
	for i, eng := range engines {
		wg.Go(func() { errs[i] = fn(eng) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// handleNew runs fn on every event of the feed after *pos, moving *pos.
func handleNew(t *testing.T, store saga.Store, pos *events.Token, fn func(events.Envelope) error) {
	t.Helper()
	for {
		b, err := drive.Read(context.Background(), store, *pos, feed.Filter{}, 100)
		require.NoError(t, err)
		if len(b.Events) == 0 {
			return
		}
		for _, env := range b.Events {
			*pos = env.Token
			require.NoError(t, fn(env))
		}
	}
}

package saga_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestMetricsCountWhatCommitted runs one scenario twice, once as is and
// once with units whose commits fail at random with feed.ErrConflict (each
// such unit rolls back and runs again, as a memory unit that lost a race
// does), and requires the same metrics from both: a step, a park's wait,
// a stuck step's release, an ignored message, a stale timer, a duplicate
// delivery and a failure count once however many times their unit ran.
// Only the gate waits differ, as each run of a unit waits again.
func TestMetricsCountWhatCommitted(t *testing.T) {
	t.Parallel()
	forEachSeed(t, 8, 2, func(t *testing.T, mk storeMaker, seed uint64) { //nolint:thelper // a subtest body, not a helper
		want := metricsOf(t, mk, nil)
		rng := rand.New(rand.NewPCG(seed, 31))
		var mu sync.Mutex
		failed, streak := 0, 0
		got := metricsOf(t, mk, func() bool {
			mu.Lock()
			defer mu.Unlock()
			// Never more in a row than the retries of a unit allow.
			if streak < 3 && rng.IntN(3) == 0 {
				streak++
				failed++
				return true
			}
			streak = 0
			return false
		})
		require.Positive(t, failed, "no commit failed")
		require.Equal(t, want, got, "metrics after %d failed commits", failed)
	})
}

// metricsOf runs the scenario on a fresh store whose commits fail when
// conflict says so, and returns the engine's metrics but the gate waits.
func metricsOf(t *testing.T, mk storeMaker, conflict func() bool) map[string]float64 {
	t.Helper()
	ctx := context.Background()
	store := &unitWatch{Store: newStore(t, mk), conflict: conflict}
	flaky := saga.New[orderState]("flaky", &saga.Config[orderState]{MaxAttempts: 2, RetryBackoff: time.Second})
	saga.StartOn(flaky, byOrder[PaymentDeclined], func(*saga.Step[orderState], PaymentDeclined) error {
		return errors.New("the payment service is down")
	})
	metrics := prometheus.NewRegistry()
	fx := sagatest.New(t, &sagatest.Config{
		Registry: store.Registry(), Store: store,
		Sagas:  []saga.Definition{orderSaga(true), flaky},
		Models: map[string]sagatest.Model{summaryModel: applySummary},
		Engine: func(c *saga.EngineConfig) {
			c.Registerer, c.Logger = metrics, slog.New(slog.DiscardHandler)
		},
	})

	// A park that turns stuck, then runs.
	fx.HoldModel(summaryModel)
	fx.Given(placed("1", 30), ev("1", StockReserved{OrderID: "1"}))
	fx.ExpectParked(orders, "1", summaryModel)
	fx.Advance(saga.DefaultStuckAfter + time.Second)
	require.True(t, fx.Instance(orders, "1").Stuck)
	fx.ReleaseModel(summaryModel)
	fx.ExpectCommands(ChargePayment{OrderID: "1", Amount: 30})
	// A completion, then a message for the ended instance.
	fx.When(ev("1", PaymentCharged{OrderID: "1"}), ev("1", Ping{OrderID: "1", N: 1}))
	fx.ExpectStatus(orders, "1", saga.StatusCompleted)
	// A timer that fires before its reschedule is taken: stale.
	fx.Given(placed("2", 30))
	fx.Append(ev("2", Ping{OrderID: "2", N: -1}))
	fx.Clock().Advance(31 * time.Minute)
	_, err := fx.Engine().FireDue(ctx)
	require.NoError(t, err)
	fx.When()
	require.Contains(t, kinds(fx.History(orders, "2")), saga.KindTimerStale)
	// A duplicate delivery.
	envs, err := store.ReadStream(ctx, "order-2", 1, 1)
	require.NoError(t, err)
	require.NoError(t, drive.Unit(ctx, store, 0, func(ctx context.Context) error { return fx.Engine().Handle(ctx, envs[0]) }))
	// A step that fails, is retried, and fails its instance.
	fx.When(ev("3", PaymentDeclined{OrderID: "3"}))
	fx.Advance(time.Second)
	fx.ExpectStatus("flaky", "3", saga.StatusFailed)

	families, err := metrics.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, f := range families {
		switch f.GetName() {
		case "converge_saga_gate_waits_total", "converge_saga_gate_wait_seconds":
			continue
		}
		for _, m := range f.GetMetric() {
			key := f.GetName()
			for _, l := range m.GetLabel() {
				key += fmt.Sprintf(" %s=%s", l.GetName(), l.GetValue())
			}
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

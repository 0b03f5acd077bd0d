package converge_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/projections"
	"github.com/converge-es/converge/saga"
)

// TestNewClientRefusesEachBadField: every documented refusal of
// Config.validate that TestNewClientRefusesBadConfig does not cover is an
// error from NewClient naming the field, and no client is built.
func TestNewClientRefusesEachBadField(t *testing.T) {
	t.Parallel()
	st, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })

	for _, tt := range []struct {
		name string
		cfg  converge.Config
		want string
	}{
		{"SubscriberCommitBatch", converge.Config{Subscriber: feed.SubscriberConfig{CommitBatch: 5}}, "Config.Subscriber.CommitBatch is set"},
		{"SubscriberOnCommitted", converge.Config{Subscriber: feed.SubscriberConfig{OnCommitted: func(string, events.Token) {}}}, "Config.Subscriber.OnCommitted is set"},
		{"SubscriberPartition", converge.Config{Subscriber: feed.SubscriberConfig{Partition: feed.Partition{Index: 0, Count: 2}}}, "Config.Subscriber.Partition is set"},
		{"SubscriberPartitionKeyOnly", converge.Config{Subscriber: feed.SubscriberConfig{Partition: feed.Partition{Key: feed.ByCorrelation}}}, "Config.Subscriber.Partition is set"},
		{"NegativeGateTimeout", converge.Config{GateTimeout: -time.Millisecond}, "Config.GateTimeout is -1ms"},
		{"NegativeLagSLA", converge.Config{LagSLA: -time.Second}, "Config.LagSLA and LagInterval must not be negative"},
		{"NegativeLagInterval", converge.Config{LagInterval: -time.Second}, "Config.LagSLA and LagInterval must not be negative"},
		{"TinyLagInterval", converge.Config{LagInterval: lag.MinInterval - 1}, "Config.LagInterval is 9.999999ms: use 0 for the default (1s) or at least 10ms"},
		{"BlankSagaProcessor", converge.Config{SagaProcessor: " \t "}, "Config.SagaProcessor is blank"},
		{"TooManySagaPartitions", converge.Config{SagaPartitions: feed.MaxPartitions + 1}, fmt.Sprintf("Config.SagaPartitions is %d", feed.MaxPartitions+1)},
		{"NilProjection", converge.Config{Projections: []*projections.Projection{projections.New("fine", nil), nil}}, "Config.Projections[1] is nil"},
		{"NilSaga", converge.Config{Sagas: []saga.Definition{nil}}, "Config.Sagas[0] is nil"},
		{"NilCommand", converge.Config{Commands: []cqrs.CommandHandler{nil}}, "Config.Commands[0] is nil"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg
			cfg.Logger = slog.New(slog.DiscardHandler)
			var (
				c   *converge.Client
				err error
			)
			require.NotPanics(t, func() { c, err = converge.NewClient(st, &cfg) })
			require.ErrorContains(t, err, tt.want)
			require.Nil(t, c)
		})
	}

	// The bounds themselves are accepted.
	c, err := converge.NewClient(st, &converge.Config{SagaPartitions: feed.MaxPartitions, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err, "SagaPartitions = feed.MaxPartitions is allowed")
	require.NoError(t, c.Stop(context.Background()))
}

// TestStartContextBoundsTheStartOnly: Start's ctx bounds the start only.
// Cancelled right after Start returns, it stops nothing: the projections,
// the saga processor, the command handler, the Tracker and the lag
// monitor keep running, and orders placed afterwards complete.
func TestStartContextBoundsTheStartOnly(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		var client *converge.Client
		cfg := shop(store, func(name string) *projections.View { return client.Projections().View(name) })
		cfg.Subscriber = feed.SubscriberConfig{LeaseTTL: time.Minute}
		cfg.SagaPartitions = 4
		cfg.LagInterval = 10 * time.Millisecond
		client, err := converge.NewClient(store, cfg)
		require.NoError(t, err)

		startCtx, cancel := context.WithCancel(context.Background())
		require.NoError(t, client.Start(startCtx))
		cancel()
		t.Cleanup(func() { require.NoError(t, client.Stop(context.Background())) })

		placeAndAwait(t, client, 0, 5)
		require.True(t, client.Router().IsRunning(), "the router outlived Start's ctx")
		// The lag monitor still samples on its own after the cancel.
		for range 2 {
			passed := client.Lag().Passed()
			select {
			case <-passed:
			case <-time.After(30 * time.Second):
				t.Fatal("the lag monitor stopped sampling when Start's ctx was cancelled")
			}
		}
	})
}

// panicSpy is a slog.Handler keeping the value of every
// middleware.RecoveredPanicError logged (as the "error" attribute the
// router's logger adapter gives a handler's error).
type panicSpy struct{ recovered chan any }

func (panicSpy) Enabled(context.Context, slog.Level) bool { return true }

func (s panicSpy) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok {
			var rp middleware.RecoveredPanicError
			if errors.As(err, &rp) {
				select {
				case s.recovered <- rp.V:
				default:
				}
			}
		}
		return true
	})
	return nil
}

func (s panicSpy) WithAttrs([]slog.Attr) slog.Handler { return s }
func (s panicSpy) WithGroup(string) slog.Handler      { return s }

// TestDefaultRouterRecoversAPanickingHandler: the default router has
// middleware.Recoverer, so a command handler that panics on its first
// delivery does not take the process down: the panic becomes the
// handler's error (a middleware.RecoveredPanicError, which the router
// logs), the command is delivered again and handled, the saga completes,
// and the client goes on handling later orders.
func TestDefaultRouterRecoversAPanickingHandler(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		var client *converge.Client
		cfg := shop(store, func(name string) *projections.View { return client.Projections().View(name) })
		cfg.Subscriber = feed.SubscriberConfig{LeaseTTL: time.Minute}
		cfg.SagaPartitions = 2
		var panicked atomic.Bool
		var decided atomic.Int32
		card := events.Aggregate[int]{Apply: func(n int, _ any) (int, error) { return n + 1, nil }}
		charge := command.Handle("charge-card", store, card, func(c ChargeCard) string { return "card-" + c.OrderID },
			func(_ context.Context, _ int, c ChargeCard) ([]any, error) {
				decided.Add(1)
				if panicked.CompareAndSwap(false, true) {
					panic("the card gateway's client blew up")
				}
				return []any{CardCharged{OrderID: c.OrderID}}, nil
			})
		cfg.Commands = []cqrs.CommandHandler{charge}
		spy := panicSpy{recovered: make(chan any, 16)}
		cfg.Logger = slog.New(spy)
		require.Nil(t, cfg.Router, "the default router is under test")
		client, err := converge.NewClient(store, cfg)
		require.NoError(t, err)
		require.NoError(t, client.Start(context.Background()))
		t.Cleanup(func() { require.NoError(t, client.Stop(context.Background())) })

		placeAndAwait(t, client, 0, 1)
		require.True(t, panicked.Load(), "the handler panicked on its first delivery")
		require.GreaterOrEqual(t, decided.Load(), int32(2), "and was delivered the command again")
		v, err := store.StreamVersion(context.Background(), "card-0")
		require.NoError(t, err)
		require.EqualValues(t, 1, v, "the card was charged once")
		select {
		case got := <-spy.recovered:
			require.Equal(t, "the card gateway's client blew up", got, "the router logged the panic as a middleware.RecoveredPanicError")
		default:
			t.Fatal("no middleware.RecoveredPanicError was logged: the panic did not go through middleware.Recoverer")
		}

		require.True(t, client.Router().IsRunning(), "the client is still running")
		placeAndAwait(t, client, 1, 3)
	})
}

// TestLagSLAAppliesToReadModelsWithoutOne: Config.LagSLA is the lag
// monitor's SLA for the read models that declare none (strong ones); an
// eventual projection keeps the SLA it declares (its own, or
// projections.DefaultSLA).
func TestLagSLAAppliesToReadModelsWithoutOne(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		const sla = 7*time.Second + 250*time.Millisecond
		strong := projections.New("strong_status", &projections.Config{Class: consistency.Strong})
		projections.On(strong, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderPlaced) error {
			return tx.Table("orders").Put(ctx, e.OrderID, "placed")
		})
		declared := projections.New("report", &projections.Config{SLA: 30 * time.Second})
		projections.On(declared, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderPlaced) error {
			return tx.Table("orders").Put(ctx, e.OrderID, e.Cents)
		})
		defaulted := projections.New("summary", nil)
		projections.On(defaulted, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderPlaced) error {
			return tx.Table("orders").Put(ctx, e.OrderID, true)
		})
		client, err := converge.NewClient(store, &converge.Config{
			Projections: []*projections.Projection{strong, declared, defaulted},
			Subscriber:  feed.SubscriberConfig{LeaseTTL: time.Minute},
			LagSLA:      sla,
			Logger:      slog.New(slog.DiscardHandler),
		})
		require.NoError(t, err)
		require.NoError(t, client.Start(ctx))
		t.Cleanup(func() { require.NoError(t, client.Stop(context.Background())) })

		reports, err := client.Lag().Check(ctx)
		require.NoError(t, err)
		got := map[string]time.Duration{}
		for _, r := range reports {
			got[r.Name] = r.SLA
		}
		require.Equal(t, map[string]time.Duration{
			"strong_status": sla,
			"report":        30 * time.Second,
			"summary":       projections.DefaultSLA,
		}, got)
	})
}

// TestLagIntervalSetsTheSamplingPeriod: the lag monitor samples every
// Config.LagInterval, and every second (DefaultLagInterval) when it is
// left zero.
func TestLagIntervalSetsTheSamplingPeriod(t *testing.T) {
	t.Parallel()
	require.Equal(t, time.Second, converge.DefaultLagInterval)
	// gaps starts a client with interval and returns how long each of the
	// monitor's next n passes took to follow the one before.
	gaps := func(t *testing.T, interval time.Duration, n int) []time.Duration {
		t.Helper()
		store, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
		require.NoError(t, err)
		t.Cleanup(func() { _ = store.Close() })
		status := projections.New("order_status", nil)
		projections.On(status, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderPlaced) error {
			return tx.Table("orders").Put(ctx, e.OrderID, "placed")
		})
		client, err := converge.NewClient(store, &converge.Config{
			Projections: []*projections.Projection{status},
			LagInterval: interval,
			Logger:      slog.New(slog.DiscardHandler),
		})
		require.NoError(t, err)
		require.NoError(t, client.Start(context.Background()))
		t.Cleanup(func() { require.NoError(t, client.Stop(context.Background())) })
		// Start runs a first pass at once; measure from the end of one.
		select {
		case <-client.Lag().Passed():
		case <-time.After(30 * time.Second):
			t.Fatal("the lag monitor never sampled")
		}
		var out []time.Duration
		last := time.Now()
		for range n {
			next := client.Lag().Passed()
			select {
			case <-next:
			case <-time.After(30 * time.Second):
				t.Fatal("the lag monitor stopped sampling")
			}
			now := time.Now()
			out = append(out, now.Sub(last))
			last = now
		}
		return out
	}
	t.Run("Set", func(t *testing.T) {
		t.Parallel()
		var total time.Duration
		for _, g := range gaps(t, 20*time.Millisecond, 5) {
			total += g
		}
		require.Less(t, total, 900*time.Millisecond, "5 passes at a 20ms interval took %s", total)
	})
	t.Run("Default", func(t *testing.T) {
		t.Parallel()
		// One gap alone can look short: this goroutine may learn of the
		// pass it measures from late (a loaded machine once made it
		// 867 ms). The sum of three is shortened by that delay only once.
		var total time.Duration
		for _, g := range gaps(t, 0, 3) {
			require.Less(t, g, 5*time.Second, "passes at the default interval came %s apart", g)
			total += g
		}
		require.GreaterOrEqual(t, total, 2500*time.Millisecond, "3 passes at the default interval (1s) took %s", total)
	})
}

package converge_test

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/projections"
)

// TestDefaultRouterCloseTimeout: the router the client creates waits up to
// DefaultCloseTimeout (30s) for handlers in flight when it closes, as the
// router itself says when Stop closes it.
func TestDefaultRouterCloseTimeout(t *testing.T) {
	t.Parallel()
	require.Equal(t, 30*time.Second, converge.DefaultCloseTimeout)
	store, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	spy := newLogSpy()
	cfg := shop(store, nil)
	cfg.Projections = nil
	cfg.Sagas = nil
	cfg.Logger = slog.New(spy)
	require.Nil(t, cfg.Router, "the default router is under test")
	client, err := converge.NewClient(store, cfg)
	require.NoError(t, err)
	run(t, client)
	stop(t, client)

	var timeouts []string
	spy.mu.Lock()
	for _, r := range *spy.records {
		if r.msg == "Waiting for messages" && r.attrs["component"] == "converge.router" {
			timeouts = append(timeouts, r.attrs["timeout"])
		}
	}
	spy.mu.Unlock()
	require.Equal(t, []string{converge.DefaultCloseTimeout.String()}, timeouts, "the router's close timeout")
}

// handlerNames is a middleware recording the names of the router handlers
// it sees a message of.
type handlerNames struct {
	mu    sync.Mutex
	names map[string]bool
}

func (h *handlerNames) middleware(next message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		h.mu.Lock()
		if h.names == nil {
			h.names = map[string]bool{}
		}
		h.names[message.HandlerNameFromCtx(msg.Context())] = true
		h.mu.Unlock()
		return next(msg)
	}
}

func (h *handlerNames) get() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.names))
	for n := range h.names {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// TestConfigRouterRunsTheSagasAndCommandHandlers: the sagas and the
// command handlers run on Config.Router, so its middleware sees their
// messages; the projections run on the runner's own router, with
// Config.ProjectionMiddleware, which sees theirs and only theirs. The
// client runs the router in Start (it runs when Start returns) and closes
// it in Stop.
func TestConfigRouterRunsTheSagasAndCommandHandlers(t *testing.T) {
	t.Parallel()
	store, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	var onRouter, onProjections handlerNames
	router.AddMiddleware(onRouter.middleware)

	var client *converge.Client
	cfg := shop(store, func(name string) *projections.View { return client.Projections().View(name) })
	cfg.Subscriber = feed.SubscriberConfig{LeaseTTL: time.Minute}
	cfg.SagaPartitions = 1
	cfg.Router = router
	cfg.ProjectionMiddleware = []message.HandlerMiddleware{onProjections.middleware}
	client, err = converge.NewClient(store, cfg)
	require.NoError(t, err)
	require.Same(t, router, client.Router())
	require.False(t, router.IsRunning())
	require.NoError(t, client.Start(t.Context()))
	stopped := false
	defer func() {
		if !stopped {
			stopQuietly(client)
		}
	}()
	require.True(t, router.IsRunning(), "Start returned before the router ran")

	placeAndAwait(t, client, 0, 3)
	require.Equal(t, []string{"charge-card", converge.DefaultSagaProcessor}, onRouter.get(),
		"Config.Router's middleware saw the messages of the saga processor and the command handler, and no others")
	require.Equal(t, []string{"order_status"}, onProjections.get(),
		"Config.ProjectionMiddleware saw the projection's messages, and no others")

	stop(t, client)
	stopped = true
	require.True(t, router.IsClosed(), "Stop did not close Config.Router")
}

// TestProjectionMiddlewarePanicIsRecovered: Config.ProjectionMiddleware
// is added after middleware.Recoverer, so a panic in it is recovered
// there: it becomes the delivery's error (a
// middleware.RecoveredPanicError, which the projections' router logs),
// the event is delivered again, and the projection goes on.
func TestProjectionMiddlewarePanicIsRecovered(t *testing.T) {
	t.Parallel()
	store, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	var panicked atomic.Bool
	var client *converge.Client
	cfg := shop(store, func(name string) *projections.View { return client.Projections().View(name) })
	cfg.Subscriber = feed.SubscriberConfig{LeaseTTL: time.Minute}
	spy := panicSpy{recovered: make(chan any, 16)}
	cfg.Logger = slog.New(spy)
	cfg.ProjectionMiddleware = []message.HandlerMiddleware{func(next message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			if panicked.CompareAndSwap(false, true) {
				panic("a projection middleware blew up")
			}
			return next(msg)
		}
	}}
	client, err = converge.NewClient(store, cfg)
	require.NoError(t, err)
	run(t, client)
	placeAndAwait(t, client, 0, 2)
	require.True(t, panicked.Load())
	select {
	case got := <-spy.recovered:
		require.Equal(t, "a projection middleware blew up", got)
	default:
		t.Fatal("no middleware.RecoveredPanicError was logged: the panic did not go through middleware.Recoverer")
	}
}

// TestProjectionMiddlewareDelaysWithoutHoldingTheFeed: a
// Config.ProjectionMiddleware holding one projection's event back holds
// back only that projection: it runs before the event's unit of work
// begins, so the feed (on PostgreSQL, every consumer's view of it) moves
// on, and the other projections and the sagas take the events after it.
func TestProjectionMiddlewareDelaysWithoutHoldingTheFeed(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		held, release := make(chan struct{}), make(chan struct{})
		var holding atomic.Bool
		var client *converge.Client
		cfg := shop(store, func(name string) *projections.View { return client.Projections().View(name) })
		cfg.Subscriber = feed.SubscriberConfig{LeaseTTL: time.Minute}
		audit := projections.New("audit", nil)
		projections.On(audit, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderPlaced) error {
			return tx.Table("orders").Put(ctx, e.OrderID, e.Cents)
		})
		cfg.Projections = append(cfg.Projections, audit)
		cfg.ProjectionMiddleware = []message.HandlerMiddleware{func(next message.HandlerFunc) message.HandlerFunc {
			return func(msg *message.Message) ([]*message.Message, error) {
				if message.HandlerNameFromCtx(msg.Context()) == "audit" && holding.CompareAndSwap(false, true) {
					close(held)
					select {
					case <-release:
					case <-msg.Context().Done():
						return nil, msg.Context().Err()
					}
				}
				return next(msg)
			}
		}}
		client, err := converge.NewClient(store, cfg)
		require.NoError(t, err)
		run(t, client)
		released := false
		defer func() {
			if !released {
				close(release)
			}
		}()

		first, err := client.Appender().Append(ctx, "order-x", events.NoStream, events.Event{Data: OrderPlaced{OrderID: "x", Cents: 1}})
		require.NoError(t, err)
		select {
		case <-held:
		case <-ctx.Done():
			t.Fatal("the audit projection never took the first order")
		}
		// order_status and the sagas move on: orders 1 to 3 (and x) complete.
		placeAndAwait(t, client, 1, 3)
		pos, ok := client.Tracker().Position("audit")
		require.True(t, !ok || pos.Before(first.Token), "the audit projection is still held")

		close(release)
		released = true
		head, err := store.Head(ctx)
		require.NoError(t, err)
		st, err := client.Tracker().Wait(upToCap(t), head, "audit")
		require.NoError(t, err)
		require.False(t, st.Stale)
	})
}

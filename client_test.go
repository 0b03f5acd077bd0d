package converge_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/projections"
	"github.com/converge-es/converge/saga"
)

// stores are the stores every client test runs on.
var stores = map[string]func(t *testing.T) converge.Store{
	"memory": func(t *testing.T) converge.Store {
		t.Helper()
		st, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		return st
	},
	"postgres": func(t *testing.T) converge.Store {
		t.Helper()
		db := pgtest.New(t, &pgtest.Config{MaxConns: 16})
		st, err := pgstore.New(context.Background(), db.Pool, &pgstore.Config{Schema: db.Schema, Registry: shopRegistry()})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		return st
	},
}

func forEachStore(t *testing.T, fn func(t *testing.T, store converge.Store)) {
	t.Helper()
	for name, mk := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, mk(t))
		})
	}
}

// newShop returns a client of the example's shop on store, with leases
// that outlive the test: a takeover can only come from a release.
func newShop(t *testing.T, store converge.Store) *converge.Client {
	t.Helper()
	var client *converge.Client
	cfg := shop(store, func(name string) *projections.View { return client.Projections().View(name) })
	cfg.Subscriber = feed.SubscriberConfig{LeaseTTL: time.Minute}
	cfg.SagaPartitions = 4
	client, err := converge.NewClient(store, cfg)
	require.NoError(t, err)
	return client
}

// start starts client and stops it when the test ends.
func start(t *testing.T, client *converge.Client) {
	t.Helper()
	require.NoError(t, client.Start(context.Background()))
	t.Cleanup(func() { _ = client.Stop(context.Background()) })
}

// placeAndAwait places n orders through client and waits until the saga
// processor has consumed everything they caused, then checks every order
// completed and reads as paid.
func placeAndAwait(t *testing.T, client *converge.Client, from, n int) {
	t.Helper()
	ctx := context.Background()
	for i := from; i < from+n; i++ {
		id := fmt.Sprint(i)
		res, err := client.Appender().Append(ctx, "order-"+id, events.NoStream, events.Event{
			Data: OrderPlaced{OrderID: id, Cents: 100 * i}, Metadata: events.Metadata{CorrelationID: id},
		})
		require.NoError(t, err)
		require.False(t, res.Token.IsZero())
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		done, err := client.Sagas().List(ctx, saga.Filter{Saga: "checkout", Status: saga.StatusCompleted})
		require.NoError(c, err)
		assert.GreaterOrEqual(c, len(done), from+n, "checkouts completed")
	}, 30*time.Second, 5*time.Millisecond, "orders %d to %d never completed", from, from+n-1)
	head, err := client.Store().Head(ctx)
	require.NoError(t, err)
	st, err := client.Tracker().Wait(upToCap(t), head, "order_status")
	require.NoError(t, err)
	require.False(t, st.Stale)
	for i := from; i < from+n; i++ {
		v, ok, err := projections.Get[string](ctx, client.Projections().View("order_status").Table("orders"), fmt.Sprint(i))
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, "paid", v)
	}
}

func TestClientLifecycle(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		client := newShop(t, store)
		require.NoError(t, client.Start(ctx))
		require.ErrorIs(t, client.Start(ctx), converge.ErrAlreadyStarted)
		require.NotNil(t, client.Router())
		require.NotNil(t, client.Lag())
		require.NotNil(t, client.Commands())
		require.Len(t, client.SagaProcessor().CheckpointNames(), 4)
		require.NoError(t, client.Stop(ctx))
		require.NoError(t, client.Stop(ctx), "a second Stop is harmless")
		require.ErrorIs(t, client.Start(ctx), converge.ErrStopped)

		unstarted := newShop(t, store)
		require.NoError(t, unstarted.Stop(ctx), "Stop without Start")
	})
}

// TestClientFailedStart: a Start that fails after its projections and
// saga engine started (here a plugin of its router fails) returns that
// error once, without waiting the router's CloseTimeout for handlers that
// never ran; the client cannot be started again, a later Stop has nothing
// to add, and another client on the store runs the work.
func TestClientFailedStart(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
		require.NoError(t, err)
		router.AddPlugin(func(*message.Router) error { return errors.New("this router cannot run") })
		var failed *converge.Client
		cfg := shop(store, func(name string) *projections.View { return failed.Projections().View(name) })
		cfg.Subscriber = feed.SubscriberConfig{LeaseTTL: time.Minute}
		cfg.Router = router
		failed, err = converge.NewClient(store, cfg)
		require.NoError(t, err)
		err = failed.Start(ctx)
		require.ErrorContains(t, err, "this router cannot run")
		require.NotContains(t, err.Error(), "router close timeout", "Stop waited for handlers that never ran")
		require.ErrorIs(t, failed.Start(ctx), converge.ErrStopped)
		require.NoError(t, failed.Stop(ctx), "Start reported the failure; Stop has nothing to add")

		second := newShop(t, store)
		require.NoError(t, second.Start(ctx))
		defer func() { require.NoError(t, second.Stop(ctx)) }()
		placeAndAwait(t, second, 0, 3)
	})
}

func TestClientRunsProjectionsSagasAndCommands(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		client := newShop(t, store)
		require.NoError(t, client.Start(ctx))
		defer func() { require.NoError(t, client.Stop(ctx)) }()
		placeAndAwait(t, client, 0, 10)
		gs := client.GateStats()
		require.GreaterOrEqual(t, gs.Gated, int64(10), "every order's first step reads order_status")
		require.LessOrEqual(t, gs.Behind, gs.Gated)

		// The Tracker knows the saga processor by one name, the lowest of
		// its partitions: it covers every partition's checkpoint.
		head, err := store.Head(ctx)
		require.NoError(t, err)
		st, err := client.Tracker().Wait(upToCap(t), head, converge.DefaultSagaProcessor)
		require.NoError(t, err)
		require.False(t, st.Stale)
	})
}

// TestClientStopReleasesLeases: a second client takes the work over as soon
// as the first stops, long before the first one's leases (a minute) would
// have expired.
func TestClientStopReleasesLeases(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		first := newShop(t, store)
		require.NoError(t, first.Start(ctx))
		placeAndAwait(t, first, 0, 3)
		require.NoError(t, first.Stop(ctx))

		second := newShop(t, store)
		require.NoError(t, second.Start(ctx))
		defer func() { require.NoError(t, second.Stop(ctx)) }()
		// placeAndAwait gives up after 30s, half the minute the first
		// client's leases would take to expire: only the release lets the
		// second client finish in time.
		placeAndAwait(t, second, 3, 3)
	})
}

func TestNewClientRefusesBadConfig(t *testing.T) {
	t.Parallel()
	st, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	defer st.Close()
	_, err = converge.NewClient(nil, nil)
	require.ErrorContains(t, err, "needs a store")
	_, err = converge.NewClient(st, &converge.Config{Subscriber: feed.SubscriberConfig{ConsumerName: "mine"}})
	require.ErrorContains(t, err, "Config.Subscriber.ConsumerName is set")
	_, err = converge.NewClient(st, &converge.Config{SagaPartitions: -1})
	require.ErrorContains(t, err, "Config.SagaPartitions")
	_, err = converge.NewClient(st, &converge.Config{CommitBatch: -1})
	require.ErrorContains(t, err, "Config.CommitBatch")
	// The retention reaches the saga engine, which refuses a unit slip.
	slip := shop(st, nil)
	slip.SagaRetention = 7
	_, err = converge.NewClient(st, slip)
	require.ErrorContains(t, err, "Retention")
	running, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- running.Run(context.Background()) }()
	<-running.Running()
	_, err = converge.NewClient(st, &converge.Config{Router: running})
	require.ErrorContains(t, err, "Config.Router is already running")
	require.NoError(t, running.Close())
	require.NoError(t, <-done)

	c, err := converge.NewClient(st, nil)
	require.NoError(t, err, "an empty Config runs the Tracker alone")
	require.Nil(t, c.Sagas())
	require.Nil(t, c.SagaProcessor())
	require.Nil(t, c.Projections())
	require.Nil(t, c.Commands())
	require.Nil(t, c.Lag(), "no projections, nothing to watch")
	require.Same(t, st, c.Appender(), "no projections: appends go to the store itself")
	require.NoError(t, c.Start(context.Background()))
	require.NoError(t, c.Stop(context.Background()))
}

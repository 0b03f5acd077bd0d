package converge_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/projections"
)

// TestOnProjectionUpdateHearsEachCommittedChange: Config.OnProjectionUpdate
// is called once for each committed read-model change, after its commit
// (the change is readable when it is called), and never for the writes of
// an attempt that was rolled back.
func TestOnProjectionUpdateHearsEachCommittedChange(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	store, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })

	var failed atomic.Bool
	status := projections.New("ledger", nil)
	projections.On(status, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderPlaced) error {
		if err := tx.Table("orders").Put(ctx, e.OrderID, e.Cents); err != nil {
			return err
		}
		if e.OrderID == "flaky" && failed.CompareAndSwap(false, true) {
			return errors.New("the first attempt fails after its write")
		}
		return nil
	})
	type heard struct {
		update   projections.Update
		readable bool
	}
	var (
		mu      sync.Mutex
		updates []heard
		client  *converge.Client
	)
	client, err = converge.NewClient(store, &converge.Config{
		Projections: []*projections.Projection{status},
		Subscriber:  feed.SubscriberConfig{LeaseTTL: time.Minute},
		OnProjectionUpdate: func(u projections.Update) {
			var v int
			found, err := client.Projections().View("ledger").Table(u.Table).Get(context.Background(), u.Key, &v)
			mu.Lock()
			defer mu.Unlock()
			updates = append(updates, heard{update: u, readable: err == nil && found && fmt.Sprint(v) == string(u.Value)})
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	run(t, client)

	ids := []string{"a", "flaky", "b"}
	var last events.Token
	for i, id := range ids {
		res, err := client.Appender().Append(ctx, "order-"+id, events.NoStream, events.Event{Data: OrderPlaced{OrderID: id, Cents: i + 1}})
		require.NoError(t, err)
		last = res.Token
	}
	st, err := client.Tracker().Wait(upToCap(t), last, "ledger")
	require.NoError(t, err)
	require.False(t, st.Stale)
	require.True(t, failed.Load(), "the flaky order's first attempt failed")

	mu.Lock()
	defer mu.Unlock()
	byKey := map[string][]heard{}
	for _, h := range updates {
		byKey[h.update.Key] = append(byKey[h.update.Key], h)
	}
	require.Len(t, byKey, len(ids), "updates: %v", updates)
	for i, id := range ids {
		require.Len(t, byKey[id], 1, "order %s: one committed change, one update", id)
		h := byKey[id][0]
		require.Equal(t, projections.UpdatePut, h.update.Kind)
		require.Equal(t, "ledger", h.update.Projection)
		require.Equal(t, "orders", h.update.Table)
		require.JSONEq(t, fmt.Sprint(i+1), string(h.update.Value))
		require.True(t, h.readable, "order %s: the change was not readable when its update came", id)
	}
}

// TestAppenderAppliesStrongProjectionsInTheAppend: Client.Appender applies
// the strong projections in each append's own unit of work, so a read
// right after the append sees them. The projections' processors are held
// by a middleware here, so nothing else applies the events: an eventual
// projection beside the strong one does not see them yet.
func TestAppenderAppliesStrongProjectionsInTheAppend(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		strong := projections.New("strong_orders", &projections.Config{Class: consistency.Strong})
		projections.On(strong, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderPlaced) error {
			return tx.Table("orders").Put(ctx, e.OrderID, e.Cents)
		})
		eventual := projections.New("eventual_orders", nil)
		projections.On(eventual, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderPlaced) error {
			return tx.Table("orders").Put(ctx, e.OrderID, e.Cents)
		})
		release := make(chan struct{})
		client, err := converge.NewClient(store, &converge.Config{
			Projections: []*projections.Projection{strong, eventual},
			ProjectionMiddleware: []message.HandlerMiddleware{func(next message.HandlerFunc) message.HandlerFunc {
				return func(msg *message.Message) ([]*message.Message, error) {
					select {
					case <-release:
					case <-msg.Context().Done():
						return nil, msg.Context().Err()
					}
					return next(msg)
				}
			}},
			Subscriber: feed.SubscriberConfig{LeaseTTL: time.Minute},
			Logger:     slog.New(slog.DiscardHandler),
		})
		require.NoError(t, err)
		run(t, client)
		released := false
		defer func() {
			if !released {
				close(release)
			}
		}()
		require.NotSame(t, store, client.Appender(), "with projections, appends go through the runner")

		for i := range 3 {
			id := fmt.Sprint(i)
			_, err := client.Appender().Append(ctx, "order-"+id, events.NoStream, events.Event{Data: OrderPlaced{OrderID: id, Cents: 10 + i}})
			require.NoError(t, err)
			cents, ok, err := projections.Get[int](ctx, client.Projections().View("strong_orders").Table("orders"), id)
			require.NoError(t, err)
			require.True(t, ok, "order %s: the strong read model did not see its append", id)
			require.Equal(t, 10+i, cents)
			_, ok, err = projections.Get[int](ctx, client.Projections().View("eventual_orders").Table("orders"), id)
			require.NoError(t, err)
			require.False(t, ok, "order %s: the eventual read model was applied while its processor was held", id)
		}
		close(release)
		released = true
		head, err := store.Head(ctx)
		require.NoError(t, err)
		st, err := client.Tracker().Wait(upToCap(t), head, "strong_orders", "eventual_orders")
		require.NoError(t, err)
		require.False(t, st.Stale)
	})
}

// TestCatalogListsEveryProjection: Client.Catalog holds every projection's
// declared class and SLA (projections.DefaultSLA for an eventual one that
// declares none).
func TestCatalogListsEveryProjection(t *testing.T) {
	t.Parallel()
	store, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	noop := func(context.Context, *projections.Tx, events.Envelope, OrderPlaced) error { return nil }
	strong := projections.New("b_strong", &projections.Config{Class: consistency.Strong, Description: "strong one"})
	projections.On(strong, noop)
	declared := projections.New("a_declared", &projections.Config{SLA: 42 * time.Second})
	projections.On(declared, noop)
	defaulted := projections.New("c_defaulted", nil)
	projections.On(defaulted, noop)
	client, err := converge.NewClient(store, &converge.Config{
		Projections: []*projections.Projection{strong, declared, defaulted},
		Logger:      slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	require.Equal(t, []consistency.ReadModel{
		{Name: "a_declared", Class: consistency.Eventual, SLA: 42 * time.Second},
		{Name: "b_strong", Class: consistency.Strong, Description: "strong one"},
		{Name: "c_defaulted", Class: consistency.Eventual, SLA: projections.DefaultSLA},
	}, client.Catalog().ReadModels())
	stop(t, client)
}

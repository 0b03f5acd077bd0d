package web_test

import (
	"context"
	"log/slog"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/examples/orders"
	"github.com/converge-es/converge/examples/orders/web"
	"github.com/converge-es/converge/saga"
)

// TestAppOps_CountAndListEveryInstance: the dashboard counts every
// fulfilment instance and lists the most recently updated ones however
// many orders the shop has had, past 10,000 too: the engine lists
// instances in id order, and order ids are time-ordered, so a cap on what
// the dashboard reads would keep the oldest and freeze it.
//
// The instances are made cheaply: a one-step saga of the fulfilment's
// type, on the store the App reads, ends each order it is given; the
// App itself only reads.
func TestAppOps_CountAndListEveryInstance(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := appStores["memory"](t)
	app, err := web.NewApp(&web.AppConfig{Store: store, Logger: discardLogger()})
	require.NoError(t, err)

	quick := saga.New[struct{}](orders.Fulfilment, nil)
	saga.StartOn(quick, func(e orders.OrderPlaced, _ events.Envelope) string { return e.OrderID },
		func(s *saga.Step[struct{}], _ orders.OrderPlaced) error {
			s.Fail("refused")
			return nil
		})
	maker, err := converge.NewClient(store, &converge.Config{Sagas: []saga.Definition{quick}, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.NoError(t, maker.Start(ctx))
	t.Cleanup(func() { require.NoError(t, maker.Stop(context.Background())) })

	const n = 10_050
	var last events.Token
	for range n {
		id := uuid.Must(uuid.NewV7()).String() // as the App's Place makes them
		res, err := store.Append(ctx, orders.OrderStream(id), events.NoStream, events.Event{
			Data: orders.OrderPlaced{OrderID: id, CustomerID: "c-1", SKU: "tea", Qty: 1, Cents: 450},
		})
		require.NoError(t, err)
		last = res.Token
	}
	// Every order's step has run once the saga processor passed the last
	// one: wait for that (push-woken), not by listing 10,000 instances
	// over and over.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		st, err := maker.Tracker().Wait(ctx, last, converge.DefaultSagaProcessor)
		require.NoError(t, err)
		if !st.Stale {
			break
		}
		require.True(t, time.Now().Before(deadline), "the saga processor did not pass the last order in 5 minutes")
	}
	// The engine itself, unbounded: the oracle.
	all, err := maker.Sagas().List(ctx, saga.Filter{Limit: math.MaxInt})
	require.NoError(t, err)
	require.Len(t, all, n)
	require.False(t, slices.ContainsFunc(all, func(in saga.Info) bool { return in.Status != saga.StatusFailed }), "every order's instance ended failed")

	ops := app.Ops()
	counts, err := ops.SagaCounts(ctx)
	require.NoError(t, err)
	require.Equal(t, map[string]int{string(saga.StatusFailed): n}, counts)
	slices.SortFunc(all, func(a, b saga.Info) int { return b.Updated.Compare(a.Updated) })
	recent, err := ops.Sagas(ctx, web.SagaFilter{Status: string(saga.StatusFailed), Limit: 5})
	require.NoError(t, err)
	require.Len(t, recent, 5)
	for _, s := range recent {
		require.False(t, s.UpdatedAt.Before(all[4].Updated), "%s updated at %s is not among the 5 most recent", s.ID, s.UpdatedAt)
	}
}

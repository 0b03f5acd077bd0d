package saga_test

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestListLimitDefaultsTo1000: Filter.Limit "Defaults to 1000": with more
// than 1000 instances (a random count), Engine.List and Operator.List of
// the zero Filter return the first 1000 in their order, while a Limit
// above the count returns them all. On the in-memory store, to keep it
// fast: the limit is applied by code the stores share.
func TestListLimitDefaultsTo1000(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(randomSeed(t), 1000))
	n := 1001 + rng.IntN(100)
	t.Logf("%d instances", n)

	s := saga.New[orderState]("many", nil)
	saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
	fx := newFixture(t, nil, setup{config: func(c *sagatest.Config) { c.Sagas = []saga.Definition{s} }})
	evs := make([]events.Event, n)
	ids := map[string]bool{}
	for i := range evs {
		id := randomID(rng, 1+rng.IntN(20))
		for ids[id] {
			id = randomID(rng, 1+rng.IntN(20))
		}
		ids[id] = true
		evs[i] = events.Event{Data: OrderPlaced{OrderID: id, Total: i}}
	}
	for len(evs) > 0 { // in appends the store takes
		k := min(len(evs), 500)
		_, err := fx.Store().Append(ctx, "orders", events.AnyVersion, evs[:k]...)
		require.NoError(t, err)
		evs = evs[k:]
	}
	require.NoError(t, fx.Settle())

	all, err := fx.Engine().List(ctx, saga.Filter{Limit: n + 1})
	require.NoError(t, err)
	require.Equal(t, n, len(all), "every instance started")
	op, err := saga.NewOperator(&saga.OperatorConfig{Source: fx.Store(), Clock: fx.Clock()})
	require.NoError(t, err)
	for name, list := range map[string]func(context.Context, saga.Filter) ([]saga.Info, error){
		"Engine.List": fx.Engine().List, "Operator.List": op.List,
	} {
		for _, f := range []saga.Filter{{}, {Saga: "many"}, {Status: saga.StatusRunning}} {
			got, err := list(ctx, f)
			require.NoError(t, err)
			require.Equal(t, 1000, len(got), "%s(%+v) returns 1000 instances by default", name, f)
			require.Equal(t, all[:1000], got, "%s(%+v) returns the first 1000", name, f)
		}
	}
}

package saga_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
)

// bare is an engine on a store without the fixture, for tests that deliver
// by hand.
type bare struct {
	store  saga.Store
	engine *saga.Engine
}

func newStore(t *testing.T, mk storeMaker) saga.Store {
	t.Helper()
	reg := registry()
	if mk != nil {
		return mk(t, reg)
	}
	ms, err := memstore.New(&memstore.Config{Registry: reg})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ms.Close() })
	return ms
}

func newBare(t *testing.T, mk storeMaker, defs ...saga.Definition) bare {
	t.Helper()
	store := newStore(t, mk)
	if len(defs) == 0 {
		defs = []saga.Definition{orderSaga(false)}
	}
	eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: defs})
	require.NoError(t, err)
	return bare{store: store, engine: eng}
}

// newBareOn returns an engine running defs on a store another engine
// already runs on, as a second build deployed beside the first would.
func newBareOn(t *testing.T, store saga.Store, defs ...saga.Definition) bare {
	t.Helper()
	eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: defs})
	require.NoError(t, err)
	return bare{store: store, engine: eng}
}

func (b bare) append(t *testing.T, stream string, data any) events.Envelope {
	t.Helper()
	ctx := context.Background()
	res, err := b.store.Append(ctx, stream, events.AnyVersion, events.Event{Data: data})
	require.NoError(t, err)
	envs, err := b.store.ReadStream(ctx, stream, res.LastVersion, 1)
	require.NoError(t, err)
	return envs[0]
}

func (b bare) deliver(t *testing.T, env events.Envelope) {
	t.Helper()
	require.NoError(t, drive.Unit(context.Background(), b.store, 0, func(ctx context.Context) error {
		return b.engine.Handle(ctx, env)
	}))
}

// commandIDs returns the ids of every command appended, by type. t may be
// an EventuallyWithT condition's CollectT, which retries a failed read.
func (b bare) commandIDs(t require.TestingT) map[string][]string {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	out := map[string][]string{}
	var pos events.Token
	for {
		b, err := drive.Read(context.Background(), b.store, pos, feed.Filter{}, 1000)
		require.NoError(t, err)
		if len(b.Events) == 0 {
			return out
		}
		for _, env := range b.Events {
			pos = env.Token
			if feed.InCategory(env.StreamID, command.Category(env.Type)) {
				out[env.Type] = append(out[env.Type], env.ID)
			}
		}
	}
}

func (b bare) state(t *testing.T, id string) (saga.Info, orderState) {
	t.Helper()
	tl, err := b.engine.Show(context.Background(), orders, id)
	require.NoError(t, err)
	var st orderState
	require.NoError(t, json.Unmarshal(tl.Info.State, &st))
	return tl.Info, st
}

func TestEveryDeliveryDuplicated(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		b := newBare(t, mk)
		var envs []events.Envelope
		for _, data := range []any{OrderPlaced{OrderID: "1", Total: 5}, Ping{OrderID: "1", N: 1}, StockReserved{OrderID: "1"}, PaymentCharged{OrderID: "1"}} {
			env := b.append(t, "order-1", data)
			envs = append(envs, env)
			b.deliver(t, env)
			b.deliver(t, env) // a redelivery after a lost ack
		}
		for _, env := range envs { // a replay of the whole history
			b.deliver(t, env)
		}
		ids := b.commandIDs(t)
		for _, typ := range []string{"stock.reserve", "payment.charge", "order.ship"} {
			require.Len(t, ids[typ], 1, "%s sent once", typ)
		}
		info, st := b.state(t, "1")
		require.Equal(t, saga.StatusCompleted, info.Status)
		require.Equal(t, int64(4), info.Steps)
		require.Equal(t, []int{1}, st.Pings)
		require.Equal(t, 8.0, testutil.ToFloat64(b.engine.Metrics().Duplicates.WithLabelValues(orders)))
	})
}

func TestConcurrentEventsForOneInstanceAreSerialised(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		b := newBare(t, mk)
		b.deliver(t, b.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 5}))
		const n = 16
		envs := make([]events.Envelope, n)
		for i := range envs {
			envs[i] = b.append(t, "order-1", Ping{OrderID: "1", N: i})
		}
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for _, env := range envs {
			wg.Go(func() {
				errs <- drive.Unit(context.Background(), b.store, 100, func(ctx context.Context) error {
					return b.engine.Handle(ctx, env)
				})
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		info, st := b.state(t, "1")
		require.Equal(t, int64(n+1), info.Steps, "every step ran once")
		require.ElementsMatch(t, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, st.Pings, "no step was lost")
		require.Equal(t, int64(n+1), info.Version, "one write per step, none lost to a race")
	})
}

// TestConcurrentStartsOfOneInstance starts one instance from two events
// at once (as two partitions may): one starts it, the other acts on it.
func TestConcurrentStartsOfOneInstance(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		for round := range 5 {
			b := newBare(t, mk)
			id := fmt.Sprint("r", round)
			first := b.append(t, "order-"+id, OrderPlaced{OrderID: id, Total: 1})
			second := b.append(t, "order-"+id+"-again", OrderPlaced{OrderID: id, Total: 2})
			var wg sync.WaitGroup
			errs := make(chan error, 2)
			for _, env := range []events.Envelope{first, second} {
				wg.Go(func() {
					errs <- drive.Unit(context.Background(), b.store, 100, func(ctx context.Context) error {
						return b.engine.Handle(ctx, env)
					})
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			info, _ := b.state(t, id)
			require.Equal(t, int64(2), info.Steps, "both steps ran on one instance")
			require.Equal(t, int64(2), info.Version)
			tl, err := b.engine.Show(context.Background(), orders, id)
			require.NoError(t, err)
			require.Equal(t, 1, countKind(tl, saga.KindStarted), "started once")
			require.Len(t, b.commandIDs(t)["stock.reserve"], 2)
		}
	})
}

func countKind(tl saga.Timeline, kind string) int {
	n := 0
	for _, h := range tl.History {
		if h.Kind == kind {
			n++
		}
	}
	return n
}

// passSignals makes e's driver signal the returned channel after each of
// its passes (one signal held while nobody reads). Set before Start.
func passSignals(e *saga.Engine) <-chan struct{} {
	passes := make(chan struct{}, 1)
	saga.SetPassHook(e, func(bool) {
		select {
		case passes <- struct{}{}:
		default:
		}
	})
	return passes
}

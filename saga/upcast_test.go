package saga_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
)

type stateV1 struct {
	Total int `json:"total"`
}

type stateV2 struct {
	AmountCents int   `json:"amount_cents"`
	Pings       []int `json:"pings"`
}

// v1Build is a saga at schema version 1 whose start stores the order's
// total.
func v1Build(name string) *saga.Saga[stateV1] {
	v1 := saga.New[stateV1](name, nil)
	saga.StartOn(v1, byOrder[OrderPlaced], func(st *saga.Step[stateV1], e OrderPlaced) error {
		st.State().Total = e.Total
		return nil
	})
	return v1
}

func TestStateSchemaUpcast(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		b := newBare(t, mk, v1Build("upcast"))
		b.deliver(t, b.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 3}))

		// A new build changes the state's shape while the instance is in flight.
		v2 := saga.New[stateV2]("upcast", &saga.Config[stateV2]{
			StateVersion: 2,
			Upcast: map[int]func(json.RawMessage) (json.RawMessage, error){
				1: func(old json.RawMessage) (json.RawMessage, error) {
					var s stateV1
					if err := json.Unmarshal(old, &s); err != nil {
						return nil, err
					}
					return json.Marshal(stateV2{AmountCents: s.Total * 100})
				},
			},
		})
		saga.StartOn(v2, byOrder[OrderPlaced], func(*saga.Step[stateV2], OrderPlaced) error { return nil })
		saga.On(v2, byOrder[Ping], func(st *saga.Step[stateV2], e Ping) error {
			st.State().Pings = append(st.State().Pings, e.N)
			return nil
		})
		eng2, err := saga.NewEngine(&saga.EngineConfig{Store: b.store, Sagas: []saga.Definition{v2}})
		require.NoError(t, err)
		ping := b.append(t, "order-1", Ping{OrderID: "1", N: 4})
		require.NoError(t, drive.Unit(context.Background(), b.store, 0, func(ctx context.Context) error { return eng2.Handle(ctx, ping) }))
		tl, err := eng2.Show(context.Background(), "upcast", "1")
		require.NoError(t, err)
		require.Equal(t, 2, tl.Info.StateVersion)
		require.JSONEq(t, `{"amount_cents":300,"pings":[4]}`, string(tl.Info.State))

		// A build that cannot read the stored state fails the instance with
		// the reason, once, instead of retrying forever.
		v3 := saga.New[stateV2]("upcast", &saga.Config[stateV2]{StateVersion: 3})
		saga.StartOn(v3, byOrder[OrderPlaced], func(*saga.Step[stateV2], OrderPlaced) error { return nil })
		saga.On(v3, byOrder[Ping], func(*saga.Step[stateV2], Ping) error { return nil })
		eng3, err := saga.NewEngine(&saga.EngineConfig{Store: b.store, Sagas: []saga.Definition{v3}})
		require.NoError(t, err)
		ping = b.append(t, "order-1", Ping{OrderID: "1", N: 5})
		require.NoError(t, drive.Unit(context.Background(), b.store, 0, func(ctx context.Context) error { return eng3.Handle(ctx, ping) }))
		tl, err = eng3.Show(context.Background(), "upcast", "1")
		require.NoError(t, err)
		require.Equal(t, saga.StatusFailed, tl.Info.Status)
		require.Contains(t, tl.Info.Reason, "Config.Upcast[2]")
		require.Contains(t, tl.Info.Reason, saga.ErrStateDecode.Error())
		require.Zero(t, countKind(tl, saga.KindAwaitingNewerBuild), "an older state is no wait for a newer build")
	})
}

func TestDefinitionErrors(t *testing.T) {
	t.Parallel()
	_, err := saga.NewSafely[orderState]("Bad Name", nil)
	require.ErrorContains(t, err, "lower-case")
	s := saga.New[orderState]("ok", nil)
	require.ErrorContains(t, saga.OnSafely(s, byOrder[Ping], nil), "nil handler")
	require.NoError(t, saga.OnSafely(s, byOrder[Ping], func(*saga.Step[orderState], Ping) error { return nil }))
	require.ErrorContains(t, saga.OnSafely(s, byOrder[Ping], func(*saga.Step[orderState], Ping) error { return nil }), "twice")
	b := newBare(t, nil)
	_, err = saga.NewEngine(&saga.EngineConfig{Store: b.store, Sagas: []saga.Definition{s}})
	require.ErrorContains(t, err, "no StartOn handler")
	type unregistered struct{}
	saga.StartOn(s, func(unregistered, events.Envelope) string { return "x" }, func(*saga.Step[orderState], unregistered) error { return nil })
	_, err = saga.NewEngine(&saga.EngineConfig{Store: b.store, Sagas: []saga.Definition{s}})
	require.ErrorIs(t, err, events.ErrUnknownType)
	g := saga.New[orderState]("gated", nil)
	saga.StartOn(g, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil }, saga.Reads("m"))
	_, err = saga.NewEngine(&saga.EngineConfig{Store: b.store, Sagas: []saga.Definition{g}})
	require.ErrorContains(t, err, "Tracker is nil")
}

func TestMetricsRegisterOncePerRegisterer(t *testing.T) {
	t.Parallel()
	b := newBare(t, nil)
	reg := prometheus.NewRegistry()
	def := []saga.Definition{orderSaga(false)}
	_, err := saga.NewEngine(&saga.EngineConfig{Store: b.store, Sagas: def, Registerer: reg})
	require.NoError(t, err)
	_, err = saga.NewEngine(&saga.EngineConfig{Store: b.store, Sagas: def, Registerer: reg})
	require.ErrorContains(t, err, "already registered")
	n, err := testutil.GatherAndCount(reg)
	require.NoError(t, err)
	require.Positive(t, n)
}

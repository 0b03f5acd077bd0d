package saga_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
)

// TestStateNewerThanTheBuildFailsAndKeepsTheMessage: during a rolling
// deploy an old build meets state a newer build stored. Config.Upcast
// promises the instance fails with ErrStateDecode rather than running on
// state it cannot read: the reason says to deploy the newer code, the
// stored state and its version are left as they were, the message is kept
// and later ones queue, and the newer build's Retry runs them in order.
func TestStateNewerThanTheBuildFailsAndKeepsTheMessage(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		newer := saga.New[stateV2]("newer", &saga.Config[stateV2]{StateVersion: 2})
		saga.StartOn(newer, byOrder[OrderPlaced], func(st *saga.Step[stateV2], e OrderPlaced) error {
			st.State().AmountCents = e.Total * 100
			return nil
		})
		saga.On(newer, byOrder[Ping], func(st *saga.Step[stateV2], e Ping) error {
			st.State().Pings = append(st.State().Pings, e.N)
			return nil
		})
		b := newBare(t, mk, newer)
		b.deliver(t, b.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 3}))
		before, err := b.engine.Show(ctx, "newer", "1")
		require.NoError(t, err)
		require.Equal(t, 2, before.Info.StateVersion)

		// The old build, still running beside it, takes the next message.
		older := saga.New[stateV1]("newer", nil)
		saga.StartOn(older, byOrder[OrderPlaced], func(*saga.Step[stateV1], OrderPlaced) error { return nil })
		olderRan := 0
		saga.On(older, byOrder[Ping], func(st *saga.Step[stateV1], _ Ping) error {
			olderRan++
			st.State().Total = -1
			return nil
		})
		old := newBareOn(t, b.store, older)
		old.deliver(t, b.append(t, "order-1", Ping{OrderID: "1", N: 5}))
		old.deliver(t, b.append(t, "order-1", Ping{OrderID: "1", N: 6}))
		require.Zero(t, olderRan, "the old build never runs a handler on state it cannot read")
		tl, err := old.engine.Show(ctx, "newer", "1")
		require.NoError(t, err)
		require.Equal(t, saga.StatusFailed, tl.Info.Status)
		require.Contains(t, tl.Info.Reason, "stored at schema v2, this build knows v1 (deploy the newer code)")
		require.Contains(t, tl.Info.Reason, saga.ErrStateDecode.Error())
		require.Equal(t, 2, tl.Info.StateVersion, "the stored state keeps its version")
		require.JSONEq(t, string(before.Info.State), string(tl.Info.State), "the stored state is left as it was")
		require.Equal(t, int64(1), tl.Info.Queued, "the later message queues behind the failed one")
		require.Equal(t, 1, countKind(tl, saga.KindFailed))

		// The newer build takes the failed message and the queued one, in order.
		require.NoError(t, b.engine.Retry(ctx, "newer", "1"))
		_, err = b.engine.RunParked(ctx)
		require.NoError(t, err)
		tl, err = b.engine.Show(ctx, "newer", "1")
		require.NoError(t, err)
		require.Equal(t, saga.StatusRunning, tl.Info.Status)
		require.Zero(t, tl.Info.Queued)
		require.JSONEq(t, `{"amount_cents":300,"pings":[5,6]}`, string(tl.Info.State))
	})
}

// chainState is the state of TestUpcastChain at every schema version: V
// says which version the JSON claims to be, Log which upcasters ran.
type chainState struct {
	V   int   `json:"v"`
	N   int   `json:"n"`
	Log []int `json:"log"`
}

// chainBuild is the saga as a build at schema version v defines it: its
// upcasters check they get the version they are written for, so one run
// out of order, twice or skipped fails the instance.
func chainBuild(v int) *saga.Saga[chainState] {
	up := map[int]func(json.RawMessage) (json.RawMessage, error){}
	for from := 1; from < v; from++ {
		up[from] = func(raw json.RawMessage) (json.RawMessage, error) {
			var s chainState
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, err
			}
			if s.V != from {
				return nil, fmt.Errorf("Upcast[%d] got state of version %d", from, s.V)
			}
			s.V, s.N, s.Log = from+1, chainStep(s.N, from), append(s.Log, from)
			return json.Marshal(s)
		}
	}
	s := saga.New[chainState]("chain", &saga.Config[chainState]{StateVersion: v, Upcast: up})
	saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[chainState], e OrderPlaced) error {
		*st.State() = chainState{V: v, N: e.Total}
		return nil
	})
	saga.On(s, byOrder[Ping], func(st *saga.Step[chainState], _ Ping) error {
		if st.State().V != v {
			return saga.Permanent(fmt.Errorf("build v%d decoded state claiming v%d", v, st.State().V))
		}
		return nil
	})
	return s
}

// chainStep is Upcast[from]'s change to N: not commutative, so the order
// of the chain shows.
func chainStep(n, from int) int { return n*3 + from }

// TestUpcastChain deploys builds of rising schema versions over instances
// started by random builds: each step brings the state through every
// upcaster from its stored version to the build's, once each and in order,
// and stores it at the build's version.
func TestUpcastChain(t *testing.T) {
	t.Parallel()
	forEachSeed(t, 20, 4, func(t *testing.T, mk storeMaker, seed uint64) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 7))
		ctx := context.Background()
		top := 2 + rng.IntN(5)
		store := newStore(t, mk)
		builds := make([]bare, top+1)
		for v := 1; v <= top; v++ {
			builds[v] = newBareOn(t, store, chainBuild(v))
		}
		models := map[string]*chainState{}
		for i := range 1 + rng.IntN(4) {
			id := fmt.Sprint(i)
			v := 1 + rng.IntN(top)
			n := rng.IntN(100)
			builds[v].deliver(t, builds[v].append(t, "order-"+id, OrderPlaced{OrderID: id, Total: n}))
			models[id] = &chainState{V: v, N: n}
		}
		// Each deploy is at least as new as the last, as in a rollout; a
		// message for one instance reaches the deployed build.
		deployed := 1
		for range 3 + rng.IntN(6) {
			deployed = min(top, deployed+rng.IntN(3))
			id := fmt.Sprint(rng.IntN(len(models)))
			m := models[id]
			if m.V > deployed {
				continue // the old build would fail it (TestStateNewerThanTheBuildFailsAndKeepsTheMessage)
			}
			builds[deployed].deliver(t, builds[deployed].append(t, "order-"+id, Ping{OrderID: id}))
			for from := m.V; from < deployed; from++ {
				m.N, m.Log = chainStep(m.N, from), append(m.Log, from)
			}
			m.V = deployed
		}
		for id, m := range models {
			tl, err := builds[top].engine.Show(ctx, "chain", id)
			require.NoError(t, err)
			require.Equal(t, saga.StatusRunning, tl.Info.Status, "seed %d instance %s: %s", seed, id, tl.Info.Reason)
			require.Equal(t, m.V, tl.Info.StateVersion, "seed %d instance %s", seed, id)
			var got chainState
			require.NoError(t, json.Unmarshal(tl.Info.State, &got))
			require.Equal(t, *m, got, "seed %d instance %s", seed, id)
		}
	})
}

package saga_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/clocktest"
	"github.com/converge-es/converge/saga"
)

// TestStateNewerThanTheBuildWaitsForTheNewerBuild: during a rolling
// deploy an old build meets state a newer build stored. The old build
// never runs a step on it, and the instance does not fail: the step is
// handed back to wait, with backoff, for a newer build (a history entry,
// a log line and converge_saga_newer_state_total say so), later messages
// queue behind it, and no wait counts as an attempt, however many pass
// Config.MaxAttempts (the newer build's first failure is its attempt 1).
// Once the newer build takes the instance it runs the waiting message and
// the queued one in order, each exactly once, with no operator's Retry.
func TestStateNewerThanTheBuildWaitsForTheNewerBuild(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		clock := clocktest.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
		cfg := func(v int) saga.Config[stateV2] {
			return saga.Config[stateV2]{StateVersion: v, MaxAttempts: 3, RetryBackoff: time.Second, MaxRetryBackoff: 4 * time.Second}
		}
		newerCfg := cfg(2)
		newer := saga.New[stateV2]("newer", &newerCfg)
		saga.StartOn(newer, byOrder[OrderPlaced], func(st *saga.Step[stateV2], e OrderPlaced) error {
			st.State().AmountCents = e.Total * 100
			return nil
		})
		var newerRan []int
		flaky := true
		saga.On(newer, byOrder[Ping], func(st *saga.Step[stateV2], e Ping) error {
			if flaky {
				flaky = false
				return errors.New("the payment service is down")
			}
			newerRan = append(newerRan, e.N)
			st.State().Pings = append(st.State().Pings, e.N)
			return nil
		})
		store := newStore(t, mk)
		engine := func(def saga.Definition, logger *slog.Logger) *saga.Engine {
			eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{def}, Clock: clock, Logger: logger})
			require.NoError(t, err)
			return eng
		}
		b := bare{store: store, engine: engine(newer, slog.New(slog.DiscardHandler))}
		b.deliver(t, b.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 3}))
		before, err := b.engine.Show(ctx, "newer", "1")
		require.NoError(t, err)
		require.Equal(t, 2, before.Info.StateVersion)

		// The old build, still running beside it, takes the next messages.
		olderCfg := cfg(1)
		older := saga.New[stateV2]("newer", &olderCfg)
		saga.StartOn(older, byOrder[OrderPlaced], func(*saga.Step[stateV2], OrderPlaced) error { return nil })
		olderRan := 0
		saga.On(older, byOrder[Ping], func(*saga.Step[stateV2], Ping) error {
			olderRan++
			return nil
		})
		var logs bytes.Buffer // the test drives the engine from this goroutine only
		old := bare{store: store, engine: engine(older, slog.New(slog.NewTextHandler(&logs, nil)))}
		waits := func() float64 { return testutil.ToFloat64(old.engine.Metrics().NewerState.WithLabelValues("newer")) }
		ping5 := b.append(t, "order-1", Ping{OrderID: "1", N: 5})
		old.deliver(t, ping5)
		old.deliver(t, b.append(t, "order-1", Ping{OrderID: "1", N: 6}))
		old.deliver(t, ping5) // a redelivery is a duplicate, not another wait
		const says = "state stored at schema v2, this build knows v1 (deploy the newer build everywhere)"
		show := func() saga.Timeline {
			t.Helper()
			tl, err := old.engine.Show(ctx, "newer", "1")
			require.NoError(t, err)
			require.Zero(t, olderRan, "the old build never runs a handler on state it cannot read")
			require.Equal(t, saga.StatusParked, tl.Info.Status, "waiting for a newer build is no failure")
			require.Zero(t, countKind(tl, saga.KindFailed))
			require.Equal(t, 2, tl.Info.StateVersion, "the stored state keeps its version")
			require.JSONEq(t, string(before.Info.State), string(tl.Info.State), "the stored state is left as it was")
			require.Equal(t, int64(1), tl.Info.Queued, "the later message queues behind the waiting one")
			return tl
		}
		tl := show()
		require.Equal(t, clock.Now().Add(time.Second), tl.Info.RetryAt)
		require.Equal(t, 1, countKind(tl, saga.KindAwaitingNewerBuild))
		require.Contains(t, lastOf(tl, saga.KindAwaitingNewerBuild).Detail, says)
		require.Contains(t, logs.String(), "deploy the newer build everywhere")
		require.Contains(t, logs.String(), "stored_version=2 build_version=1")
		require.Equal(t, 1.0, waits())

		// Before its time the step stays where it is.
		moved, err := old.engine.RunParked(ctx)
		require.NoError(t, err)
		require.Zero(t, moved)
		require.Equal(t, 1, countKind(show(), saga.KindAwaitingNewerBuild))

		// The old build tries again with backoff, past MaxAttempts, and
		// neither runs the step nor fails the instance.
		for i, delay := range []time.Duration{2, 4, 4, 4} {
			clock.Advance(tl.Info.RetryAt.Sub(clock.Now()))
			_, err := old.engine.RunParked(ctx)
			require.NoError(t, err)
			tl = show()
			require.Equal(t, clock.Now().Add(delay*time.Second), tl.Info.RetryAt, "wait %d", i+2)
			require.Equal(t, i+2, countKind(tl, saga.KindAwaitingNewerBuild))
			require.Equal(t, float64(i+2), waits())
		}

		// The newer build takes over once the retry time comes. Its first
		// attempt fails, and is its first: the waits counted none.
		takeOver := func(want saga.Status) saga.Timeline {
			t.Helper()
			clock.Advance(tl.Info.RetryAt.Sub(clock.Now()))
			_, err := b.engine.RunParked(ctx)
			require.NoError(t, err)
			tl, err := b.engine.Show(ctx, "newer", "1")
			require.NoError(t, err)
			require.Equal(t, want, tl.Info.Status, tl.Info.Reason)
			return tl
		}
		tl = takeOver(saga.StatusParked)
		require.Contains(t, lastOf(tl, saga.KindRetryScheduled).Detail, "attempt 1 failed")
		require.Empty(t, newerRan)

		// Then it runs the waiting message and the queued one, each once,
		// in order.
		tl = takeOver(saga.StatusRunning)
		require.Zero(t, tl.Info.Queued)
		require.Equal(t, []int{5, 6}, newerRan)
		require.Equal(t, 3, countKind(tl, saga.KindStep))
		require.JSONEq(t, `{"amount_cents":300,"pings":[5,6]}`, string(tl.Info.State))
		_, err = old.engine.RunParked(ctx)
		require.NoError(t, err)
		b.deliver(t, ping5)
		old.deliver(t, ping5)
		require.Equal(t, []int{5, 6}, newerRan, "a redelivery after the step runs nothing")
		require.Zero(t, olderRan)
	})
}

// TestStateThatDoesNotDecodeStillFails: only a state newer than the build
// waits; one at the build's own version that does not decode fails the
// instance with ErrStateDecode, as before (for an older one with no
// upcaster see TestStateSchemaUpcast).
func TestStateThatDoesNotDecodeStillFails(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		type mistyped struct {
			Total string `json:"total"` // stateV1 stores a number
		}
		b := newBare(t, mk, v1Build("mistyped"))
		b.deliver(t, b.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 3}))

		// A build that changed the state's shape without raising StateVersion.
		build := saga.New[mistyped]("mistyped", nil)
		saga.StartOn(build, byOrder[OrderPlaced], func(*saga.Step[mistyped], OrderPlaced) error { return nil })
		ran := 0
		saga.On(build, byOrder[Ping], func(*saga.Step[mistyped], Ping) error {
			ran++
			return nil
		})
		n := newBareOn(t, b.store, build)
		n.deliver(t, b.append(t, "order-1", Ping{OrderID: "1", N: 1}))
		tl, err := n.engine.Show(context.Background(), "mistyped", "1")
		require.NoError(t, err)
		require.Zero(t, ran)
		require.Equal(t, saga.StatusFailed, tl.Info.Status)
		require.Contains(t, tl.Info.Reason, saga.ErrStateDecode.Error())
		require.Zero(t, countKind(tl, saga.KindAwaitingNewerBuild))
		require.Zero(t, testutil.ToFloat64(n.engine.Metrics().NewerState.WithLabelValues("mistyped")))
	})
}

// lastOf returns the newest history entry of a kind.
func lastOf(tl saga.Timeline, kind string) saga.HistoryEntry {
	for i := len(tl.History) - 1; i >= 0; i-- {
		if tl.History[i].Kind == kind {
			return tl.History[i]
		}
	}
	return saga.HistoryEntry{}
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
				continue // the old build would hand it back (TestStateNewerThanTheBuildWaitsForTheNewerBuild)
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

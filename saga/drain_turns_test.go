package saga_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// turnsSaga parks each instance's first step for a retry a minute away,
// so the messages after it queue, and reports every step it runs.
func turnsSaga(ran func(step string)) *saga.Saga[struct{}] {
	var mu sync.Mutex
	retried := map[string]bool{}
	s := saga.New[struct{}]("turns", nil)
	saga.StartOn(s, byOrder[OrderPlaced], func(_ *saga.Step[struct{}], e OrderPlaced) error {
		mu.Lock()
		again := retried[e.OrderID]
		retried[e.OrderID] = true
		mu.Unlock()
		if !again {
			return saga.RetryAfter(time.Minute)
		}
		ran(e.OrderID + "/start")
		return nil
	})
	saga.On(s, byOrder[Ping], func(_ *saga.Step[struct{}], e Ping) error {
		ran(fmt.Sprintf("%s/%d", e.OrderID, e.N))
		return nil
	})
	return s
}

// blockTurns parks "a" with queued pings behind it and "b" with one; "a"
// sorts first, so the driver reaches it first.
func blockTurns(t *testing.T, fx *sagatest.Fixture, queued int) {
	t.Helper()
	for _, id := range []string{"a", "b"} {
		fx.When(placed(id, 1)).ExpectStatus("turns", id, saga.StatusParked)
	}
	for n := range queued {
		fx.When(ev("a", Ping{OrderID: "a", N: n}))
	}
	fx.When(ev("b", Ping{OrderID: "b", N: 0}))
	require.Equal(t, int64(queued), fx.Instance("turns", "a").Queued)
	require.Equal(t, int64(1), fx.Instance("turns", "b").Queued)
}

// TestDriverTakesTurnsBetweenBlockedInstances: when several blocked
// instances may move on, the driver runs at most DrainPerTurn steps of
// one before it turns to the next, so an instance with a long queue does
// not hold up the others' steps; the rest of its queue runs later, in
// order.
func TestDriverTakesTurnsBetweenBlockedInstances(t *testing.T) {
	t.Parallel()
	const turn, queued = 4, 10
	var ran []string
	fx := sagatest.New(t, &sagatest.Config{
		Registry: registry(), Sagas: []saga.Definition{turnsSaga(func(step string) { ran = append(ran, step) })},
		Engine: func(c *saga.EngineConfig) { c.DrainPerTurn = turn },
	})
	blockTurns(t, fx, queued)

	fx.Clock().Advance(time.Minute) // both retries are due
	_, err := fx.Engine().RunParked(context.Background())
	require.NoError(t, err)
	ahead := slices.Index(ran, "b/start")
	require.NotEqual(t, -1, ahead, "b's step waited for a later pass: %v", ran)
	require.LessOrEqual(t, ahead, turn, "%d steps of a ran before b's first: %v", ahead, ran)

	require.NoError(t, fx.Settle())
	var want []string
	want = append(want, "a/start")
	for n := range queued {
		want = append(want, fmt.Sprintf("a/%d", n))
	}
	var gotA []string
	for _, step := range ran {
		if step[0] == 'a' {
			gotA = append(gotA, step)
		}
	}
	require.Equal(t, want, gotA, "a's steps ran once each, in order")
	require.Equal(t, []string{"b/start", "b/0"}, slices.DeleteFunc(ran, func(s string) bool { return s[0] == 'a' }))
	for _, id := range []string{"a", "b"} {
		in := fx.Instance("turns", id)
		require.Equal(t, saga.StatusRunning, in.Status)
		require.Zero(t, in.Queued)
	}
}

// TestDriverGoesBackToACutDrainAtOnce: the driver's loop takes the rest of
// a queue it cut short at its next pass, at once, not at the next sweep
// (an hour away here).
func TestDriverGoesBackToACutDrainAtOnce(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fx := sagatest.New(t, &sagatest.Config{
		Registry: registry(), Sagas: []saga.Definition{turnsSaga(func(string) {})},
		Engine: func(c *saga.EngineConfig) { c.DrainPerTurn, c.SweepInterval = 2, time.Hour },
	})
	blockTurns(t, fx, 5)
	fx.Clock().Advance(time.Minute) // not fx.Advance: the driver's loop is to run the steps

	eng := fx.Engine()
	passes := make(chan struct{}, 1)
	saga.SetPassHook(eng, func(bool) {
		select {
		case passes <- struct{}{}:
		default:
		}
	})
	require.NoError(t, eng.Start(ctx))
	defer func() { require.NoError(t, eng.Stop(context.Background())) }()
	for {
		select {
		case <-passes:
		case <-ctx.Done():
			in := fx.Instance("turns", "a")
			t.Fatalf("the driver left a with %d queued messages (status %s) until the next sweep", in.Queued, in.Status)
		}
		a, b := fx.Instance("turns", "a"), fx.Instance("turns", "b")
		if a.Queued == 0 && b.Queued == 0 && a.Status == saga.StatusRunning && b.Status == saga.StatusRunning {
			return
		}
	}
}

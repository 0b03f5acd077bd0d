package saga_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
)

// TestUnitLooksAgainBeforeIgnoring: the head of a unit reads the instances
// of all its events at once, so it may find one absent that another unit
// starts while earlier steps of this unit run. A message for it must not be
// ignored on that old absence (the start has adopted the ignored messages
// it could see already, and this one would never reach the instance): the
// step looks again and runs on the instance. (In memory the unit's commit
// would conflict and the unit run again anyway; on PostgreSQL the second
// look is what finds the instance.)
func TestUnitLooksAgainBeforeIgnoring(t *testing.T) {
	t.Parallel()
	// Not on a pool of one connection: the step holds it while the test
	// starts the other instance, which needs one of its own.
	for _, name := range []string{"memory", "postgres"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			lateStart(t, storeMakers[name])
		})
	}
}

func lateStart(t *testing.T, mk storeMaker) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store := newStore(t, mk)
	tracker, err := consistency.NewTracker(nil)
	require.NoError(t, err)
	inStep, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s := saga.New[orderState]("late_start", nil)
	saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
	saga.On(s, byOrder[Ping], func(st *saga.Step[orderState], e Ping) error {
		if e.N == 1 {
			once.Do(func() { close(inStep) })
			<-release
		}
		st.State().Pings = append(st.State().Pings, e.N)
		return nil
	})
	eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{s}, Tracker: tracker})
	require.NoError(t, err)
	b := bare{store: store, engine: eng}
	b.deliver(t, b.append(t, "order-a", OrderPlaced{OrderID: "a"}))
	proc, err := feed.NewProcessor(store, &feed.ProcessorConfig{
		Name: "late_start", Types: eng.Types(), PartitionKey: eng.PartitionKey(), CommitBatch: 10,
		Subscriber: feed.SubscriberConfig{Logger: slog.New(slog.DiscardHandler)},
	}, eng.Handle)
	require.NoError(t, err)
	// The processor starts behind: one unit of the start of "a" (a
	// duplicate, already taken), a ping for "a" and one for "b".
	b.append(t, "order-a", Ping{OrderID: "a", N: 1})
	b.append(t, "order-b", Ping{OrderID: "b", N: 2})
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- proc.Run(pctx) }()
	<-inStep
	// While the unit's step for "a" runs, "b" starts in a unit of its own.
	b.deliver(t, b.append(t, "order-b2", OrderPlaced{OrderID: "b"}))
	close(release)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		tl, err := eng.Show(ctx, "late_start", "b")
		require.NoError(c, err)
		var st orderState
		require.NoError(c, json.Unmarshal(tl.Info.State, &st))
		assert.Len(c, st.Pings, 1)
	}, 30*time.Second, time.Millisecond, "the ping reached the instance started meanwhile")
	stop()
	require.ErrorIs(t, <-done, context.Canceled)
	tl, err := eng.Show(ctx, "late_start", "b")
	require.NoError(t, err)
	require.Empty(t, tl.Ignored, "nothing was ignored for b")
}

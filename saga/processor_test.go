package saga_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
)

// process is one engine process: a router with the saga processor and the
// command handlers.
type process struct {
	cancel context.CancelFunc
	router *message.Router
	done   chan error
	eng    *saga.Engine
	proc   *feed.Processor
}

func startProcess(t *testing.T, store saga.Store, name string, tracker *consistency.Tracker, handlers bool) *process {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	sub := feed.SubscriberConfig{Owner: name, LeaseTTL: time.Second}
	cp, err := command.NewProcessor(&command.ProcessorConfig{Store: store, Router: router, Subscriber: sub})
	require.NoError(t, err)
	ec := saga.EngineConfig{Store: store, Sagas: []saga.Definition{orderSaga(false)}, Tracker: tracker}
	if handlers {
		require.NoError(t, cp.AddHandlers(commandHandlers(store)...))
		ec.Commands = cp
	}
	eng, err := saga.NewEngine(&ec)
	require.NoError(t, err)
	p, err := feed.NewProcessor(store, &feed.ProcessorConfig{
		Name: "sagas", Types: eng.Types(), Partitions: 4, PartitionKey: eng.PartitionKey(),
		Gate: eng.Gate, Waiter: tracker, Subscriber: sub,
	}, eng.Handle)
	require.NoError(t, err)
	require.NoError(t, p.AddHandlers(router))
	require.NoError(t, eng.Start(ctx))
	pr := &process{cancel: cancel, router: router, done: make(chan error, 1), eng: eng, proc: p}
	go func() { pr.done <- router.Run(ctx) }()
	<-router.Running()
	return pr
}

func (p *process) stop(t *testing.T) {
	t.Helper()
	p.cancel()
	require.NoError(t, p.router.Close())
	require.NoError(t, <-p.done)
	require.NoError(t, p.proc.Close())
	require.NoError(t, p.eng.Stop(context.Background()))
}

// TestTwoProcessesOnTheRuntime runs the order saga on feed.Processor in two
// processes sharing its partitions; one stops mid-run and the other
// finishes every instance, each command sent once.
func TestTwoProcessesOnTheRuntime(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		store := newStore(t, mk)
		tracker, err := consistency.NewTracker(nil)
		require.NoError(t, err)
		a := startProcess(t, store, "a", tracker, true)
		b := startProcess(t, store, "b", tracker, true)
		ctx := context.Background()
		const n = 12
		for i := range n {
			_, err := store.Append(ctx, fmt.Sprintf("order-%d", i), events.NoStream, events.Event{Data: OrderPlaced{OrderID: fmt.Sprint(i), Total: 10}})
			require.NoError(t, err)
			if i == n/2 {
				a.stop(t)
			}
		}
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			done, err := b.eng.List(ctx, saga.Filter{Status: saga.StatusCompleted})
			require.NoError(c, err)
			assert.Len(c, done, n, "completed instances")
		}, 60*time.Second, 10*time.Millisecond)
		b.stop(t)
		bb := bare{store: store, engine: b.eng}
		ids := bb.commandIDs(t)
		for _, typ := range []string{"stock.reserve", "payment.charge", "order.ship"} {
			require.Len(t, ids[typ], n, "%s once per order", typ)
		}
	})
}

// TestCommandsSurviveACrashAfterTheStep stops the process right after a
// step committed, before any handler saw its command: the command is in
// the feed with the step, so the next process delivers it, once.
func TestCommandsSurviveACrashAfterTheStep(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		store := newStore(t, mk)
		tracker, err := consistency.NewTracker(nil)
		require.NoError(t, err)
		a := startProcess(t, store, "a", tracker, false)
		ctx := context.Background()
		_, err = store.Append(ctx, "order-1", events.NoStream, events.Event{Data: OrderPlaced{OrderID: "1", Total: 10}})
		require.NoError(t, err)
		bb := bare{store: store, engine: a.eng}
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			assert.Len(c, bare{store: store}.commandIDs(c)["stock.reserve"], 1, "stock.reserve sent")
		}, 30*time.Second, 5*time.Millisecond)
		a.stop(t)

		b := startProcess(t, store, "b", tracker, true)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			tl, err := b.eng.Show(ctx, orders, "1")
			require.NoError(c, err)
			assert.Equal(c, saga.StatusCompleted, tl.Info.Status)
		}, 30*time.Second, 5*time.Millisecond)
		b.stop(t)
		ids := bb.commandIDs(t)
		for _, typ := range []string{"stock.reserve", "payment.charge", "order.ship"} {
			require.Len(t, ids[typ], 1, "%s once", typ)
		}
		v, err := store.StreamVersion(ctx, "stock-1")
		require.NoError(t, err)
		require.Equal(t, int64(1), v, "the stock was reserved once")
	})
}

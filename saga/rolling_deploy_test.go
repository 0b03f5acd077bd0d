package saga_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/saga"
)

// buildProcess runs one build's saga definitions on the shared "sagas"
// processor, wired as the package doc (and converge.NewClient) wires it.
// With one partition and members that handle the same, the member whose
// owner sorts first would hold it (partition i goes to member i mod n of
// the sorted members), so "a-old" would keep it while "b-new" stood by,
// as half of a real processor's partitions would stay with the old
// build's processes during a deploy.
func buildProcess(t *testing.T, store saga.Store, owner string, defs ...saga.Definition) *process {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	tracker, err := consistency.NewTracker(nil)
	require.NoError(t, err)
	eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: defs, Tracker: tracker})
	require.NoError(t, err)
	p, err := feed.NewProcessor(store, &feed.ProcessorConfig{
		Name: "sagas", Types: eng.Types(), Handles: eng.Handles(), Partitions: 1, PartitionKey: eng.PartitionKey(),
		Gate: eng.Gate, Waiter: tracker, Subscriber: feed.SubscriberConfig{Owner: owner, LeaseTTL: time.Second},
	}, eng.Handle)
	require.NoError(t, err)
	require.NoError(t, p.AddHandlers(router))
	require.NoError(t, eng.Start(ctx))
	pr := &process{cancel: cancel, router: router, done: make(chan error, 1), eng: eng, proc: p}
	go func() { pr.done <- router.Run(ctx) }()
	<-router.Running()
	return pr
}

// takenOver waits until the older build's process stands by and the newer
// one delivers the partition (events appended before that may still be
// skipped by the older one: see feed.ProcessorConfig.Handles).
func takenOver(t *testing.T, older, newer *process) {
	t.Helper()
	require.Eventually(t, func() bool {
		o, n := older.proc.Status(), newer.proc.Status()
		return slices.Equal(o.Assigned, []string{n.Member}) && o.Partitions[0].State != feed.PartitionActive &&
			n.Partitions[0].State == feed.PartitionActive
	}, 10*time.Second, 5*time.Millisecond, "the newer build's process never took the partition over: %+v / %+v", older.proc.Status(), newer.proc.Status())
}

func waitStatus(t *testing.T, eng *saga.Engine, typ, id string, want saga.Status, within time.Duration) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		tl, err := eng.Show(context.Background(), typ, id)
		if !assert.NoError(c, err) {
			return
		}
		assert.Equal(c, want, tl.Info.Status, "%s/%s history %v", typ, id, kinds(tl))
	}, within, 10*time.Millisecond)
}

// TestRollingDeployNewHandlerEventIsNotSkipped: the new build adds
// saga.On(PaymentCharged) to an existing saga type and starts beside the
// old one, which held the shared partition. An event only the new build
// handles is handled while both run: the old build, which would filter it
// out of its reads and move the shared checkpoint past it, stands by.
func TestRollingDeployNewHandlerEventIsNotSkipped(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		store := newStore(t, mk)

		older := saga.New[orderState]("shipping", nil)
		saga.StartOn(older, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })

		newer := saga.New[orderState]("shipping", nil)
		saga.StartOn(newer, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
		saga.On(newer, byOrder[PaymentCharged], func(s *saga.Step[orderState], _ PaymentCharged) error {
			s.Complete()
			return nil
		})

		a := buildProcess(t, store, "a-old", older)
		defer a.stop(t)
		_, err := store.Append(ctx, "order-1", events.NoStream, events.Event{Data: OrderPlaced{OrderID: "1", Total: 1}})
		require.NoError(t, err)
		waitStatus(t, a.eng, "shipping", "1", saga.StatusRunning, 10*time.Second)

		b := buildProcess(t, store, "b-new", newer)
		defer b.stop(t)
		takenOver(t, a, b)
		_, err = store.Append(ctx, "payment-1", events.NoStream, events.Event{Data: PaymentCharged{OrderID: "1"}})
		require.NoError(t, err)
		_, err = store.Append(ctx, "order-2", events.NoStream, events.Event{Data: OrderPlaced{OrderID: "2", Total: 1}})
		require.NoError(t, err)
		waitStatus(t, b.eng, "shipping", "1", saga.StatusCompleted, 10*time.Second)
		waitStatus(t, b.eng, "shipping", "2", saga.StatusRunning, 10*time.Second)
	})
}

// TestRollingDeployNewSagaTypeStartsForEveryEvent: the new build adds a
// saga type started by an event the old build's sagas also handle. An
// event appended while both run starts both types' instances.
func TestRollingDeployNewSagaTypeStartsForEveryEvent(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		store := newStore(t, mk)

		shipping := saga.New[orderState]("shipping", nil)
		saga.StartOn(shipping, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
		billing := saga.New[orderState]("billing", nil)
		saga.StartOn(billing, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })

		a := buildProcess(t, store, "a-old", shipping)
		defer a.stop(t)
		_, err := store.Append(ctx, "order-0", events.NoStream, events.Event{Data: OrderPlaced{OrderID: "0", Total: 1}})
		require.NoError(t, err)
		waitStatus(t, a.eng, "shipping", "0", saga.StatusRunning, 10*time.Second)

		b := buildProcess(t, store, "b-new", shipping, billing)
		defer b.stop(t)
		takenOver(t, a, b)
		_, err = store.Append(ctx, "order-1", events.NoStream, events.Event{Data: OrderPlaced{OrderID: "1", Total: 1}})
		require.NoError(t, err)
		waitStatus(t, b.eng, "billing", "1", saga.StatusRunning, 10*time.Second)
		waitStatus(t, b.eng, "shipping", "1", saga.StatusRunning, 10*time.Second)
	})
}

// TestRollingDeployNewTimeoutRunsWhileBothRun: the new build schedules
// a timer and adds its OnTimeout handler, with no change to the state's
// shape (no StateVersion raise), or adds a saga type whose start
// schedules one. While the old build still runs beside it, the firing
// reaches the new build: the old one, which has no handler for it and
// would drop it, stands by.
func TestRollingDeployNewTimeoutRunsWhileBothRun(t *testing.T) {
	t.Parallel()
	for _, newType := range []bool{false, true} {
		t.Run(fmt.Sprint("new saga type ", newType), func(t *testing.T) {
			t.Parallel()
			forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
				ctx := context.Background()
				store := newStore(t, mk)

				older := saga.New[orderState]("shipping", nil)
				saga.StartOn(older, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
				name := "shipping"
				if newType {
					name = "billing"
				}
				timed := saga.New[orderState](name, nil)
				saga.StartOn(timed, byOrder[OrderPlaced], func(s *saga.Step[orderState], _ OrderPlaced) error {
					s.Schedule("remind", 200*time.Millisecond)
					return nil
				})
				saga.OnTimeout(timed, "remind", func(s *saga.Step[orderState], _ saga.Timeout) error {
					s.Complete()
					return nil
				})
				newer := []saga.Definition{timed}
				if newType {
					newer = append(newer, older)
				}

				a := buildProcess(t, store, "a-old", older)
				defer a.stop(t)
				b := buildProcess(t, store, "b-new", newer...)
				defer b.stop(t)
				takenOver(t, a, b)
				_, err := store.Append(ctx, "order-1", events.NoStream, events.Event{Data: OrderPlaced{OrderID: "1", Total: 1}})
				require.NoError(t, err)
				waitStatus(t, b.eng, name, "1", saga.StatusCompleted, 10*time.Second)
				tl, err := b.eng.Show(ctx, name, "1")
				require.NoError(t, err)
				require.NotContains(t, kinds(tl), saga.KindNoTimeoutHandler)
			})
		})
	}
}

// TestRollingDeployRenamedEventTypeIsNotSkipped: the new build renames
// OrderPlaced's stored name to "order.created" and aliases the old one
// (events.Registry.Alias). An OrderPlaced the new build appends (stored as
// "order.created") while the old build still runs, whose filter has
// "order.placed" only, starts its instance. Two stores (one per build,
// each with its build's registry) on one PostgreSQL schema.
func TestRollingDeployRenamedEventTypeIsNotSkipped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, &pgtest.Config{MaxConns: 12})
	mkStore := func(reg *events.Registry) saga.Store {
		st, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, Registry: reg})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	oldReg := events.NewRegistry()
	events.Register[OrderPlaced](oldReg, "order.placed")
	newReg := events.NewRegistry()
	events.Register[OrderPlaced](newReg, "order.created")
	require.NoError(t, newReg.Alias("order.placed", "order.created"))
	oldSt, newSt := mkStore(oldReg), mkStore(newReg)

	def := func() *saga.Saga[orderState] {
		s := saga.New[orderState]("shipping", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
		return s
	}
	a := buildProcess(t, oldSt, "a-old", def())
	defer a.stop(t)
	_, err := oldSt.Append(ctx, "order-0", events.NoStream, events.Event{Data: OrderPlaced{OrderID: "0", Total: 1}})
	require.NoError(t, err)
	waitStatus(t, a.eng, "shipping", "0", saga.StatusRunning, 10*time.Second)

	b := buildProcess(t, newSt, "b-new", def())
	defer b.stop(t)
	takenOver(t, a, b)
	_, err = newSt.Append(ctx, "order-1", events.NoStream, events.Event{Data: OrderPlaced{OrderID: "1", Total: 1}})
	require.NoError(t, err)
	_, err = oldSt.Append(ctx, "order-2", events.NoStream, events.Event{Data: OrderPlaced{OrderID: "2", Total: 1}})
	require.NoError(t, err)
	waitStatus(t, b.eng, "shipping", "1", saga.StatusRunning, 10*time.Second)
	waitStatus(t, b.eng, "shipping", "2", saga.StatusRunning, 10*time.Second)
}

package saga_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// logBuffer collects log output written from many goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// routing is a saga whose correlation function fails on some orders: it
// returns "" for a total of -1 and panics for -2.
func routing() *saga.Saga[orderState] {
	s := saga.New[orderState]("routing", nil)
	saga.StartOn(s, func(e OrderPlaced, _ events.Envelope) string {
		switch e.Total {
		case -1:
			return ""
		case -2:
			panic("no order id")
		}
		return e.OrderID
	}, func(st *saga.Step[orderState], e OrderPlaced) error {
		st.State().OrderID = e.OrderID
		return nil
	})
	return s
}

// TestBadCorrelationReachesTheFailurePolicy runs the engine on
// feed.Processor, as the package doc mounts it, with random orders of
// which some cannot be routed (the correlation function returns "" or
// panics), under a random failure policy and MaxAttempts. Each delivery of
// such an event counts converge_saga_bad_input_total{kind="correlation"}
// and logs the event's id and the ErrCorrelation reason; the runtime
// retries it, then dead-letters it (later events go on) or halts the
// partition at it, with the reason in the record. No instance is started
// for it.
func TestBadCorrelationReachesTheFailurePolicy(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 13))
		ctx := context.Background()
		store := newStore(t, mk)
		var logs logBuffer
		eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{routing()}, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		require.NoError(t, err)
		attempts := 1 + rng.IntN(3)
		policy := []feed.OnFailure{feed.Halt, feed.DeadLetter}[rng.IntN(2)]
		t.Logf("MaxAttempts %d, OnFailure %d", attempts, policy)
		halts := make(chan feed.HaltRecord, 1)
		letters := make(chan feed.DeadLetterRecord, 100)
		proc, err := feed.NewProcessor(store, &feed.ProcessorConfig{
			Name: "sagas", Types: eng.Types(), PartitionKey: eng.PartitionKey(), MaxAttempts: attempts, OnFailure: policy,
			Subscriber:   feed.SubscriberConfig{NackBackoffMin: time.Millisecond, NackBackoffMax: 2 * time.Millisecond},
			OnHalt:       func(r feed.HaltRecord) { halts <- r },
			OnDeadLetter: func(r feed.DeadLetterRecord) { letters <- r },
		}, eng.Handle)
		require.NoError(t, err)

		// The last event cannot be routed, so once it is dead-lettered every
		// event before it has been taken.
		var bad, goodIDs []string // the events that cannot be routed; the instances that start
		n := 4 + rng.IntN(8)
		for i := range n {
			total := 1
			if i == n-1 || rng.IntN(3) == 0 {
				total = -1 - rng.IntN(2)
			}
			id := fmt.Sprint("o", i)
			res, err := store.Append(ctx, "order-"+id, events.NoStream, events.Event{Data: OrderPlaced{OrderID: id, Total: total}})
			require.NoError(t, err)
			if total < 0 {
				bad = append(bad, res.EventIDs[0])
				continue
			}
			if policy == feed.DeadLetter || len(bad) == 0 {
				goodIDs = append(goodIDs, id)
			}
		}

		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
		require.NoError(t, err)
		require.NoError(t, proc.AddHandlers(router))
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- router.Run(rctx) }()
		stop := func() {
			cancel()
			require.NoError(t, router.Close())
			require.NoError(t, <-done)
			require.NoError(t, proc.Close())
		}
		wait := 30 * time.Second
		var reasons []string
		switch policy {
		case feed.Halt:
			select {
			case r := <-halts:
				require.Equal(t, bad[0], r.EventID, "the partition halts at the first event it cannot route")
				require.Equal(t, attempts, r.Attempts)
				reasons = append(reasons, r.Reason)
			case <-time.After(wait):
				t.Fatal("the partition did not halt")
			}
			stop()
			bad = bad[:1]
		default:
			var got []string
			for range bad {
				select {
				case r := <-letters:
					require.Equal(t, attempts, r.Attempts)
					got = append(got, r.Event.ID)
					reasons = append(reasons, r.Reason)
				case <-time.After(wait):
					t.Fatalf("%d of %d events dead-lettered", len(got), len(bad))
				}
			}
			require.Equal(t, bad, got, "each event that cannot be routed is dead-lettered, in feed order")
			stop()
		}
		for i, r := range reasons {
			require.Contains(t, r, saga.ErrCorrelation.Error(), "the record says why")
			require.Contains(t, r, bad[i], "the record names the event")
		}
		// A delivery behind the head of a unit is no attempt to the runtime,
		// but the engine ran it: each delivery is logged and counted.
		out := logs.String()
		require.Equal(t, float64(strings.Count(out, "saga: cannot route event")), testutil.ToFloat64(eng.Metrics().BadInput.WithLabelValues("correlation")),
			"every delivery of an event that cannot be routed is logged and counted")
		for _, id := range bad {
			require.GreaterOrEqual(t, strings.Count(out, "event_id="+id), attempts, "each attempt at %s is logged", id)
		}
		list, err := eng.List(ctx, saga.Filter{})
		require.NoError(t, err)
		var started []string
		for _, in := range list {
			started = append(started, in.ID)
		}
		require.ElementsMatch(t, goodIDs, started, "only the events that could be routed started instances")
	})
}

// TestCommandWithoutHandlerIsCountedAndFailsTheInstance sends random
// orders through the order saga with a random set of command types
// lacking a handler (EngineConfig.Commands). Each step that sends one
// fails its instance at once, counted once in
// converge_saga_bad_input_total{kind="no_command_handler"}: the instance's
// status, reason and history (Engine.Show) name the command type, the
// engine logs it, Engine.List finds it among the failed, and its later
// messages queue behind the failed step.
func TestCommandWithoutHandlerIsCountedAndFailsTheInstance(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 17))
		ctx := context.Background()
		handlers := catalog{}
		for _, typ := range []string{"stock.reserve", "payment.charge", "order.ship", "stock.release", "customer.notify"} {
			handlers[typ] = rng.IntN(3) > 0
		}
		t.Logf("handled command types: %v", handlers)
		var logs logBuffer
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) {
			c.Commands = handlers
			c.Engine = func(ec *saga.EngineConfig) { ec.Logger = slog.New(slog.NewTextHandler(&logs, nil)) }
		}})
		type step struct {
			data  any
			sends []string // command types, in the order the step sends them
			// registers are the compensations the step registers, checked
			// after what it sends.
			registers []string
		}
		failed := map[string]string{} // instance id -> the command type that failed it
		for i := range 6 + rng.IntN(6) {
			id := fmt.Sprint(i)
			steps := []step{{OrderPlaced{OrderID: id, Total: 10}, []string{"stock.reserve"}, []string{"customer.notify"}}}
			compensations := []string{"customer.notify"}
			if rng.IntN(4) > 0 {
				steps = append(steps, step{StockReserved{OrderID: id}, []string{"payment.charge"}, []string{"stock.release"}})
				compensations = []string{"stock.release", "customer.notify"}
			}
			switch rng.IntN(3) {
			case 0:
				steps = append(steps, step{PaymentCharged{OrderID: id}, []string{"order.ship"}, nil})
			case 1:
				steps = append(steps, step{PaymentDeclined{OrderID: id, Reason: "card"}, compensations, nil})
			}
			queued := int64(0)
			for _, s := range steps {
				if _, ok := failed[id]; ok {
					queued++
				} else {
					for _, typ := range append(slices.Clone(s.sends), s.registers...) {
						if !handlers[typ] {
							failed[id] = typ
							break
						}
					}
				}
				fx.When(ev(id, s.data))
			}
			typ, ok := failed[id]
			in := fx.Instance(orders, id)
			if !ok {
				require.NotContains(t, in.Reason, saga.ErrNoCommandHandler.Error(), "instance %s sent only handled commands", id)
				continue
			}
			require.Equal(t, saga.StatusFailed, in.Status, "instance %s sent %s", id, typ)
			require.Equal(t, queued, in.Queued, "instance %s: the later messages queue", id)
			for _, text := range []string{in.Reason, lastOf(fx.History(orders, id), saga.KindFailed).Detail} {
				require.Contains(t, text, saga.ErrNoCommandHandler.Error())
				require.Contains(t, text, fmt.Sprintf("%q", typ))
			}
			require.Regexp(t, fmt.Sprintf(`saga: instance failed".* id=%s .*%s`, id, regexp.QuoteMeta(typ)), logs.String())
		}
		require.Equal(t, float64(len(failed)), testutil.ToFloat64(fx.Engine().Metrics().BadInput.WithLabelValues("no_command_handler")),
			"one count per step that sent a command without a handler")
		list, err := fx.Engine().List(ctx, saga.Filter{Status: saga.StatusFailed})
		require.NoError(t, err)
		var ids []string
		for _, in := range list {
			if strings.Contains(in.Reason, saga.ErrNoCommandHandler.Error()) {
				ids = append(ids, in.ID)
			}
		}
		want := []string{}
		for id := range failed {
			want = append(want, id)
		}
		require.ElementsMatch(t, want, ids)
	})
}

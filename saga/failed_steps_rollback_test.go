package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
)

// TestTwoSagasWhoseStepsWriteAndFailRunEachHandlerOncePerAttempt: one
// event starts instances of two saga types; each step's handler writes
// through its unit, then fails. ErrStepWroteAndFailed's promise: the unit
// is rolled back and "when the message comes again the step is parked for
// its retry ... without running the handler again for this attempt". The
// engine forgot the failure as soon as it used it, in a unit that then
// rolled back for the other saga type's step: saga a's handler ran again.
func TestTwoSagasWhoseStepsWriteAndFailRunEachHandlerOncePerAttempt(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		var runs [2]atomic.Int32
		def := func(name string, i int) *saga.Saga[orderState] {
			s := saga.New[orderState](name, nil)
			saga.StartOn(s, func(e OrderPlaced, _ events.Envelope) string { return e.OrderID },
				func(st *saga.Step[orderState], e OrderPlaced) error {
					runs[i].Add(1)
					if err := putThroughUnit(st.Context(), name, e.OrderID, st.Token()); err != nil {
						return err
					}
					return errors.New("downstream unavailable")
				})
			return s
		}
		b := newBare(t, mk, def("wrote_a", 0), def("wrote_b", 1))
		env := b.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 1})
		deliveries := 0
		for ; deliveries < 10; deliveries++ {
			err := drive.Unit(ctx, b.store, 0, func(ctx context.Context) error { return b.engine.Handle(ctx, env) })
			if err == nil {
				break
			}
			require.ErrorIs(t, err, saga.ErrStepWroteAndFailed)
		}
		for _, name := range []string{"wrote_a", "wrote_b"} {
			tl, err := b.engine.Show(ctx, name, "1")
			require.NoError(t, err)
			require.Equal(t, saga.StatusParked, tl.Info.Status, name)
		}
		t.Logf("deliveries until committed: %d; handler runs: a=%d b=%d", deliveries+1, runs[0].Load(), runs[1].Load())
		require.Equal(t, int32(1), runs[0].Load(), "saga a's handler ran again for the same attempt")
		require.Equal(t, int32(1), runs[1].Load(), "saga b's handler ran again for the same attempt")
	})
}

// TestStepsThatWriteAndFailInOneUnitRunOncePerAttempt: a consumer that is
// behind applies several saga messages in one unit (CommitBatch, default
// 100). Each step's handler writes through its unit (Step.Context) and then
// fails with an ordinary error, which the saga doc says parks the step for
// a retry "without holding up other instances", the first delivery being
// rolled back with ErrStepWroteAndFailed and the next one parking the step
// "without running the handler again for this attempt". With the default
// processor settings (MaxAttempts 5, Halt) the partition must not halt,
// every instance must end up parked for its retry, and each handler must
// have run once (one attempt each; no driver runs here). A unit cut behind
// a step that used its remembered failure rolled the park back with the
// failure forgotten: handlers ran up to 32 times for one attempt.
func TestStepsThatWriteAndFailInOneUnitRunOncePerAttempt(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		const n = 6
		var mu sync.Mutex
		calls := map[string]int{}
		s := saga.New[orderState]("writes_then_fails", nil)
		saga.StartOn(s, func(e OrderPlaced, _ events.Envelope) string { return e.OrderID },
			func(st *saga.Step[orderState], e OrderPlaced) error {
				mu.Lock()
				calls[e.OrderID]++
				mu.Unlock()
				if err := putThroughUnit(st.Context(), "touch", e.OrderID, st.Token()); err != nil {
					return err
				}
				return errors.New("payment provider unavailable")
			})
		store := newStore(t, mk)
		eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{s}})
		require.NoError(t, err)
		for i := range n {
			_, err := store.Append(ctx, fmt.Sprintf("order-%d", i), events.AnyVersion, events.Event{Data: OrderPlaced{OrderID: fmt.Sprint(i), Total: 1}})
			require.NoError(t, err)
		}
		halted := make(chan feed.HaltRecord, 1)
		p, err := feed.NewProcessor(store, &feed.ProcessorConfig{
			Name: "sagas", Types: eng.Types(), PartitionKey: eng.PartitionKey(),
			Subscriber: feed.SubscriberConfig{NackBackoffMin: time.Millisecond, NackBackoffMax: 5 * time.Millisecond},
			OnHalt:     func(h feed.HaltRecord) { halted <- h },
		}, eng.Handle)
		require.NoError(t, err)
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		defer func() { cancel(); require.ErrorIs(t, <-done, context.Canceled) }()

		deadline := time.After(30 * time.Second)
		for {
			select {
			case h := <-halted:
				mu.Lock()
				t.Logf("handler runs per instance: %v", calls)
				mu.Unlock()
				t.Fatalf("the partition halted on event %s after %d attempts: %s", h.EventID, h.Attempts, h.Reason)
			case <-deadline:
				t.Fatal("the instances never all parked")
			case <-time.After(10 * time.Millisecond):
			}
			parked, err := eng.List(ctx, saga.Filter{Status: saga.StatusParked})
			require.NoError(t, err)
			if len(parked) == n {
				break
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for id, c := range calls {
			require.Equal(t, 1, c, "instance %s: the handler ran %d times for one attempt", id, c)
		}
	})
}

// putThroughUnit writes a row through the step's unit, as a handler that
// writes and then fails does.
func putThroughUnit(ctx context.Context, table, key string, tok events.Token) error {
	u, ok := events.UnitFromContext(ctx)
	if !ok {
		return saga.Permanent(errors.New("no unit in the step's context"))
	}
	fu, ok := u.(feed.Unit)
	if !ok {
		return saga.Permanent(errors.New("the step's unit is no feed.Unit"))
	}
	return fu.Rows().Put(ctx, "zz_wrote", table, key, json.RawMessage(`1`), tok)
}

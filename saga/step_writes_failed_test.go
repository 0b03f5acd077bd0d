package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
)

// TestFailedStepWritesThroughItsUnitDoNotLand checks Step's promise that
// an error discards everything a step did, for writes a handler makes
// through its unit (Step.Context: an append, a row read-modify-write):
// a step that writes and then fails a random number of times leaves one
// append and a counter of 1 once it succeeds, and its handler runs once
// per attempt. The delivery that failed after writing is rolled back;
// the next delivery parks the step without running the handler again.
func TestFailedStepWritesThroughItsUnitDoNotLand(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		seed := rand.Uint64()
		t.Logf("seed %d", seed)
		rng := rand.New(rand.NewPCG(seed, seed))
		ctx := context.Background()
		failures := 1 + rng.IntN(3)
		viaRows := rng.IntN(2) == 0
		var calls atomic.Int32
		s := saga.New[orderState]("writes_then_fails", nil)
		saga.StartOn(s, func(e OrderPlaced, _ events.Envelope) string { return e.OrderID },
			func(st *saga.Step[orderState], e OrderPlaced) error {
				n := calls.Add(1)
				u, ok := events.UnitFromContext(st.Context())
				if !ok {
					return saga.Permanent(errors.New("no unit in the step's context"))
				}
				if viaRows {
					fu, ok := u.(feed.Unit)
					if !ok {
						return saga.Permanent(errors.New("the step's unit is no feed.Unit"))
					}
					rows := fu.Rows()
					row, found, err := rows.Get(st.Context(), "zz_writes", "count", e.OrderID, feed.LockUpdate)
					if err != nil {
						return err
					}
					c := 0
					if found {
						if err := json.Unmarshal(row.Value, &c); err != nil {
							return err
						}
					}
					if err := rows.Put(st.Context(), "zz_writes", "count", e.OrderID, json.RawMessage(strconv.Itoa(c+1)), st.Token()); err != nil {
						return err
					}
				} else if _, err := u.Append(st.Context(), "ledger-"+e.OrderID, events.AnyVersion, events.Event{Data: StockReserved{OrderID: e.OrderID}}); err != nil {
					return err
				}
				if int(n) <= failures {
					return saga.RetryAfter(time.Millisecond)
				}
				return nil
			})
		b := newBare(t, mk, s)
		env := b.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 1})
		deliver := func() error {
			return drive.Unit(ctx, b.store, 0, func(ctx context.Context) error { return b.engine.Handle(ctx, env) })
		}
		require.ErrorIs(t, deliver(), saga.ErrStepWroteAndFailed, "the delivery whose step wrote and failed is rolled back")
		require.NoError(t, deliver(), "the next delivery parks the step")
		require.Equal(t, int32(1), calls.Load(), "without running the handler again for the same attempt")

		require.Eventually(t, func() bool {
			_, err := b.engine.RunParked(ctx)
			if err != nil {
				require.ErrorIs(t, err, saga.ErrStepWroteAndFailed, "a retried step that writes and fails again is rolled back again")
			}
			return calls.Load() == int32(failures+1)
		}, 15*time.Second, 5*time.Millisecond, "the step's retries never ran")
		require.Equal(t, int32(failures+1), calls.Load(), "one handler run per attempt")

		if viaRows {
			row, found, err := b.store.Rows().Get(ctx, "zz_writes", "count", "1", feed.LockNone)
			require.NoError(t, err)
			require.True(t, found)
			require.JSONEq(t, "1", string(row.Value), "the counter moved once: no failed attempt's write landed")
		} else {
			v, err := b.store.StreamVersion(ctx, "ledger-1")
			require.NoError(t, err)
			require.Equal(t, int64(1), v, "one append: no failed attempt's append landed")
		}
	})
}

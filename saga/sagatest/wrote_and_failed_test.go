package sagatest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// writesThenFails is a saga whose start step adds one to its order's
// counter through its unit's rows, then fails with a plain error on its
// first failures runs and completes on the next. runs counts the
// handler's runs by order.
func writesThenFails(failures int, runs map[string]int) *saga.Saga[struct{}] {
	s := saga.New[struct{}]("writes_then_fails", nil)
	saga.StartOn(s, func(e Placed, _ events.Envelope) string { return e.ID },
		func(st *saga.Step[struct{}], e Placed) error {
			runs[e.ID]++
			eu, _ := events.UnitFromContext(st.Context())
			u, ok := eu.(feed.Unit)
			if !ok {
				return saga.Permanent(errors.New("the step's context carries no feed.Unit"))
			}
			n, err := counter(st.Context(), u.Rows(), e.ID, feed.LockUpdate)
			if err != nil {
				return err
			}
			if err := u.Rows().Put(st.Context(), "test", "counters", e.ID, json.RawMessage(strconv.Itoa(n+1)), st.Token()); err != nil {
				return err
			}
			if runs[e.ID] <= failures {
				return errors.New("the service is down for now")
			}
			st.Complete()
			return nil
		})
	return s
}

// counter reads an order's counter: 0 before any write.
func counter(ctx context.Context, rows feed.Rows, id string, lock feed.Lock) (int, error) {
	row, found, err := rows.Get(ctx, "test", "counters", id, lock)
	if err != nil || !found {
		return 0, err
	}
	var n int
	err = json.Unmarshal(row.Value, &n)
	return n, err
}

func orderEvents(n int) []sagatest.Event {
	evs := make([]sagatest.Event, n)
	for i := range evs {
		evs[i] = sagatest.Event{Stream: fmt.Sprint("order-", i), Data: Placed{ID: fmt.Sprint(i)}}
	}
	return evs
}

// TestFixtureRetriesAStepThatWroteAndFailed: a step that fails after
// writing through its unit (saga.ErrStepWroteAndFailed) is no error of
// When: its message comes again, as the runtime redelivers it, and
// Advance runs its retries, once per attempt, until it completes with
// its write kept once.
func TestFixtureRetriesAStepThatWroteAndFailed(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 29))
	for failures := 1; failures <= 3; failures++ {
		runs := map[string]int{}
		f := sagatest.New(t, &sagatest.Config{Registry: shippingRegistry(), Sagas: []saga.Definition{writesThenFails(failures, runs)}})
		evs := orderEvents(1 + rng.IntN(4))
		f.When(evs...)
		for id := range runs {
			require.Equal(t, 1, runs[id], "%d failures: order %s: one run for the first attempt", failures, id)
			f.ExpectStatus("writes_then_fails", id, saga.StatusParked)
		}
		f.Advance(time.Hour)
		require.Len(t, runs, len(evs))
		for id, n := range runs {
			require.Equal(t, failures+1, n, "%d failures: order %s: one run per attempt", failures, id)
			f.ExpectStatus("writes_then_fails", id, saga.StatusCompleted)
			got, err := counter(t.Context(), f.Store().Rows(), id, feed.LockNone)
			require.NoError(t, err)
			require.Equal(t, 1, got, "%d failures: order %s: only the run that completed kept its write", failures, id)
		}
	}
}

// TestSimulationRetriesAStepThatWroteAndFailed: under the simulation's
// faults, a step that fails after writing through its unit is retried
// (its delivery and the engine's runs of its retries come again) until
// it completes, with its write kept once.
func TestSimulationRetriesAStepThatWroteAndFailed(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(simSeed(t), 31))
	for failures := 1; failures <= 3; failures++ {
		evs := orderEvents(1 + rng.IntN(4))
		// The service the step calls is down for its first calls, whichever
		// process makes them: its count outlives the simulated crashes,
		// which rebuild the definitions.
		calls := map[string]int{}
		cfg := &sagatest.SimConfig{
			Registry: shippingRegistry(),
			Sagas: func(saga.Store) []saga.Definition {
				return []saga.Definition{writesThenFails(failures, calls)}
			},
			Events: evs,
			Invariants: []sagatest.Invariant{func(v *sagatest.SimView) error {
				if !v.Final {
					return nil
				}
				for i := range evs {
					id := fmt.Sprint(i)
					tl, err := v.Timeline("writes_then_fails", id)
					if err != nil {
						return err
					}
					if tl.Info.Status != saga.StatusCompleted {
						return fmt.Errorf("order %s is %s, want completed", id, tl.Info.Status)
					}
					n, err := counter(v.Context(), v.Store.Rows(), id, feed.LockNone)
					if err != nil {
						return err
					}
					if n != 1 {
						return fmt.Errorf("order %s: counter %d, want 1: only the run that completed keeps its write", id, n)
					}
				}
				return nil
			}},
		}
		seed := rng.Uint64() >> 1
		require.NoError(t, sagatest.SimulateSeed(t.Context(), cfg, seed), "%d failures, seed %d", failures, seed)
	}
}

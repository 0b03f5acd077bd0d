package sagatest_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// retrying is a saga whose start step asks to run again after delays[i]
// on its i-th run (saga.RetryAfter) and completes once they run out; with
// down set it fails every run instead (a plain error: the configured
// backoff). runs records Step.Now of each run.
func retrying(delays []time.Duration, down bool, cfg *saga.Config[struct{}], runs *[]time.Time) *saga.Saga[struct{}] {
	s := saga.New("retrying", cfg)
	saga.StartOn(s, func(e Placed, _ events.Envelope) string { return e.ID },
		func(st *saga.Step[struct{}], _ Placed) error {
			n := len(*runs)
			*runs = append(*runs, st.Now())
			switch {
			case down:
				return errors.New("the payment service is down")
			case n < len(delays):
				return saga.RetryAfter(delays[n])
			}
			st.Complete()
			return nil
		})
	return s
}

// TestFixtureAdvanceRunsRetriesWhenDue: Advance jumps to each retry of a
// step (saga.RetryAfter's delay, or the backoff after an error) as to a
// timer, so the step runs again at the time it was due, as often as it
// asks, and an instance whose step keeps failing fails after MaxAttempts.
func TestFixtureAdvanceRunsRetriesWhenDue(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	for range 20 {
		delays := make([]time.Duration, rng.IntN(5))
		var total time.Duration
		for i := range delays {
			delays[i] = time.Duration(1 + rng.Int64N(int64(10*time.Minute)))
			total += delays[i]
		}
		var runs []time.Time
		f := sagatest.New(t, &sagatest.Config{Registry: shippingRegistry(), Sagas: []saga.Definition{retrying(delays, false, nil, &runs)}})
		f.When(sagatest.Event{Stream: "order-1", Data: Placed{ID: "1"}})
		if len(delays) > 0 {
			// Not yet due: nothing runs.
			f.Advance(delays[0] - 1)
			require.Len(t, runs, 1)
			f.ExpectStatus("retrying", "1", saga.StatusParked)
		}
		f.Advance(total + time.Hour)
		require.Len(t, runs, len(delays)+1, "one run, then one per RetryAfter")
		for i, d := range delays {
			require.Equal(t, runs[i].Add(d), runs[i+1], "run %d is due %s after run %d", i+1, d, i)
		}
		f.ExpectStatus("retrying", "1", saga.StatusCompleted)

		attempts := 2 + rng.IntN(5)
		backoff := time.Duration(1 + rng.Int64N(int64(time.Minute)))
		runs = nil
		f = sagatest.New(t, &sagatest.Config{Registry: shippingRegistry(), Sagas: []saga.Definition{
			retrying(nil, true, &saga.Config[struct{}]{MaxAttempts: attempts, RetryBackoff: backoff, MaxRetryBackoff: time.Hour}, &runs),
		}})
		f.When(sagatest.Event{Stream: "order-1", Data: Placed{ID: "1"}})
		f.Advance(24 * time.Hour)
		require.Len(t, runs, attempts, "MaxAttempts runs")
		require.Equal(t, runs[0].Add(backoff), runs[1], "the first retry is RetryBackoff after the first run")
		for i := 2; i < len(runs); i++ {
			require.Greater(t, runs[i].Sub(runs[i-1]), runs[i-1].Sub(runs[i-2]), "the backoff grows")
		}
		f.ExpectStatus("retrying", "1", saga.StatusFailed)
	}
}

// TestSimulationSettlesRetries: a simulation settles only once retries due
// within the horizon have run, so the final check sees a step that asked
// to run again completed, and one that keeps failing failed after its
// attempts, never left parked.
func TestSimulationSettlesRetries(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(simSeed(t), 9))
	for _, down := range []bool{false, true} {
		delays := []time.Duration{time.Duration(1 + rng.Int64N(int64(time.Hour)))}
		var runs []time.Time
		var final saga.Info
		cfg := &sagatest.SimConfig{
			Registry: shippingRegistry(),
			Sagas: func(saga.Store) []saga.Definition {
				return []saga.Definition{retrying(delays, down, &saga.Config[struct{}]{MaxAttempts: 3}, &runs)}
			},
			Events: []sagatest.Event{{Stream: "order-1", Data: Placed{ID: "1"}}},
			Crash:  -1, Duplicate: -1,
			Invariants: []sagatest.Invariant{func(v *sagatest.SimView) error {
				if !v.Final {
					return nil
				}
				list, err := v.Instances("retrying")
				if err != nil || len(list) != 1 {
					return fmt.Errorf("instances %v: %w", list, err)
				}
				final = list[0]
				return nil
			}},
		}
		require.NoError(t, sagatest.SimulateSeed(t.Context(), cfg, rng.Uint64()>>1))
		if down {
			require.Equal(t, saga.StatusFailed, final.Status, "a step failing every run fails its instance after MaxAttempts")
			require.Len(t, runs, 3)
		} else {
			require.Equal(t, saga.StatusCompleted, final.Status, "the step ran again after %s", delays[0])
			require.Len(t, runs, 2)
		}
	}
}

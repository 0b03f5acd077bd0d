package bench

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestPercentileIsNearestRank: the p-th percentile is the smallest sample
// with at least p of the samples at or below it. With 100 samples or
// fewer than 100, p99 is the slowest (at exactly 100 it is the 99th):
// the old index int((n-1)*p) made it the second-slowest, hiding one stale
// wait among 50.
func TestPercentileIsNearestRank(t *testing.T) {
	t.Parallel()
	ms := func(xs ...int) []time.Duration {
		out := make([]time.Duration, len(xs))
		for i, x := range xs {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	oneToTen := ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	for _, tc := range []struct {
		p    float64
		want int
	}{{0.50, 5}, {0.95, 10}, {0.99, 10}, {0.10, 1}, {0.11, 2}, {0.90, 9}, {0.91, 10}, {1, 10}, {0, 1}} {
		require.Equal(t, time.Duration(tc.want)*time.Millisecond, percentile(oneToTen, tc.p), "p%.0f of 1..10 ms", tc.p*100)
	}
	require.Equal(t, 7*time.Millisecond, percentile(ms(7), 0.99), "one sample")
	require.Zero(t, percentile(nil, 0.5), "no samples")
	// Whole ranks in exact arithmetic stay whole: p95 of 20 is the 19th.
	twenty := make([]time.Duration, 20)
	for i := range twenty {
		twenty[i] = time.Duration(i+1) * time.Millisecond
	}
	require.Equal(t, 19*time.Millisecond, percentile(twenty, 0.95))
	require.Equal(t, 10*time.Millisecond, percentile(twenty, 0.50))
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Millisecond
	}
	require.Equal(t, 99*time.Millisecond, percentile(hundred, 0.99), "p99 of 100 is the 99th")

	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 4))
	for range 2000 {
		n := 1 + rng.IntN(300)
		xs := make([]time.Duration, n)
		for i := range xs {
			xs[i] = time.Duration(rng.IntN(50)) * time.Millisecond // ties on purpose
		}
		slices.Sort(xs)
		for _, pct := range []int{50, 95, 99} {
			got := percentile(xs, float64(pct)/100)
			// The definition, in integers: at least pct% of the samples
			// are at or below got, and fewer are strictly below it.
			atOrBelow, below := 0, 0
			for _, x := range xs {
				if x <= got {
					atOrBelow++
				}
				if x < got {
					below++
				}
			}
			require.GreaterOrEqual(t, atOrBelow*100, pct*n, "seed %d n=%d p%d=%s: too few samples at or below it", seed, n, pct, got)
			require.Less(t, below*100, pct*n, "seed %d n=%d p%d=%s: a smaller sample already has p of them", seed, n, pct, got)
			// And its index is the nearest rank, ceil(pct*n/100)-1.
			require.Equal(t, xs[(pct*n+99)/100-1], got, "seed %d n=%d p%d", seed, n, pct)
		}
		if n < 100 {
			require.Equal(t, xs[n-1], percentile(xs, 0.99), "seed %d n=%d: p99 of fewer than 100 samples is the slowest", seed, n)
		}
	}
}

// TestAchievedRateArithmetic: a run's achieved rate is (n-1) intervals
// over the span from the first call's return to the last's, so calls that
// kept a schedule of R a second report R.
func TestAchievedRateArithmetic(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	require.Equal(t, 5000.0, achievedRate(10000, t0, t0.Add(9999*200*time.Microsecond)), "10,000 calls 200µs apart")
	require.Equal(t, 3000.0, achievedRate(3001, t0, t0.Add(time.Second)))
	require.Equal(t, 1.5, achievedRate(4, t0, t0.Add(2*time.Second)))
	require.Zero(t, achievedRate(1, t0, t0), "one call has no interval to measure")
	require.Zero(t, achievedRate(0, time.Time{}, time.Time{}))
	require.Zero(t, achievedRate(5, t0, t0), "no span")
	require.Equal(t, 2000.0, paced{n: 2001, first: t0, last: t0.Add(time.Second)}.perSec())

	require.True(t, reachedRate(4500, 5000), "90% reaches")
	require.False(t, reachedRate(4499.9, 5000))
	require.True(t, reachedRate(5100, 5000))
	require.False(t, reachedRate(0, 1), "nothing measured does not pass for the rate")
}

// TestPaceCallsEverySlotAndCounts: pace calls each slot once, counts the
// calls that succeeded and times the first and last; it checks counts,
// not speed.
func TestPaceCallsEverySlotAndCounts(t *testing.T) {
	t.Parallel()
	var seen [50]atomic.Int32
	res, err := pace(t.Context(), 1000, 50*time.Millisecond, 4, func(_ context.Context, i int) error {
		seen[i].Add(1)
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 50, res.n)
	for i := range seen {
		require.EqualValues(t, 1, seen[i].Load(), "slot %d", i)
	}
	require.False(t, res.last.Before(res.first))
	require.Positive(t, res.perSec())

	res, err = pace(t.Context(), 1, time.Millisecond, 2, func(context.Context, int) error { return nil })
	require.NoError(t, err)
	require.Equal(t, 1, res.n, "a run shorter than its interval still makes one call")

	boom := errors.New("boom")
	res, err = pace(t.Context(), 1000, time.Second, 3, func(_ context.Context, i int) error {
		if i == 5 {
			return boom
		}
		return nil
	})
	require.ErrorIs(t, err, boom)
	require.Less(t, res.n, 1000, "a failed call stops the schedule")
}

// TestPaceStopsWhenInterrupted: an interrupt stops the schedule at once
// (a slot a second apart is not slept out) and returns the interrupt.
func TestPaceStopsWhenInterrupted(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	calls := atomic.Int32{}
	done := make(chan error, 1)
	go func() {
		_, err := pace(ctx, 1, time.Hour, 2, func(context.Context, int) error {
			calls.Add(1)
			return nil
		})
		done <- err
	}()
	require.Eventually(t, func() bool { return calls.Load() == 1 }, 10*time.Second, time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(30 * time.Second):
		t.Fatal("pace slept out its schedule after the interrupt")
	}
	require.EqualValues(t, 1, calls.Load())
}

// TestInterruptedSaysSo: once ctx is done, a scenario's error says it was
// interrupted and keeps both the interrupt and the error; before, or
// already saying so, it is left as it is.
func TestInterruptedSaysSo(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	require.NoError(t, interrupted(t.Context(), nil))
	require.Equal(t, boom, interrupted(t.Context(), boom), "not interrupted")

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for _, err := range []error{boom, context.Canceled, errors.Join(errors.New("bench: push"), context.Canceled)} {
		got := interrupted(ctx, err)
		require.ErrorIs(t, got, errInterrupted)
		require.ErrorIs(t, got, context.Canceled)
		require.ErrorIs(t, got, err)
		require.ErrorContains(t, got, "interrupted")
	}
	already := writeLine(ctx, nil, nil)
	require.Equal(t, already, interrupted(ctx, already), "said once")
}

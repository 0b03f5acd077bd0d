package saga_test

import (
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestRetryBackoffNeverExceedsItsCap fails a step with a plain error
// every time, under random Config.RetryBackoff and MaxRetryBackoff (a cap
// under the first backoff, one a few doublings up, and the largest
// duration, where doubling overflows), and follows it on the virtual
// clock: each retry waits the backoff doubled per attempt, never more
// than the cap and never less than the time before (no retry at once,
// no hot loop), until Config.MaxAttempts fails the instance. Fields left
// zero at random must act as their documented defaults.
func TestRetryBackoffNeverExceedsItsCap(t *testing.T) {
	t.Parallel()
	forEachSeed(t, 30, 3, runBackoff)
}

func runBackoff(t *testing.T, mk storeMaker, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 17))
	backoff := time.Duration(1+rng.IntN(10_000)) * time.Millisecond
	var limit time.Duration
	switch rng.IntN(3) {
	case 0:
		limit = max(backoff/time.Duration(2+rng.IntN(4)), 1)
	case 1:
		limit = backoff << rng.IntN(8) * time.Duration(1+rng.IntN(3))
	default:
		limit = math.MaxInt64
	}
	given := &saga.Config[orderState]{RetryBackoff: backoff, MaxRetryBackoff: limit}
	// A field left zero takes its documented default.
	if rng.IntN(4) == 0 {
		given.RetryBackoff, backoff = 0, saga.DefaultRetryBackoff
	}
	if rng.IntN(4) == 0 {
		given.MaxRetryBackoff, limit = 0, saga.DefaultMaxRetryBackoff
	}
	// Enough attempts to reach the cap and stay there a few times.
	attempts := 3
	for d := backoff; d < limit && d < math.MaxInt64/2; d *= 2 {
		attempts++
	}
	given.MaxAttempts = attempts
	if rng.IntN(4) == 0 {
		given.MaxAttempts, attempts = 0, saga.DefaultMaxAttempts
	}
	var runs []time.Time
	s := saga.New[orderState]("backoff", given)
	saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], _ OrderPlaced) error {
		runs = append(runs, st.Now())
		return errors.New("the payment service is down")
	})
	reg := registry()
	cfg := &sagatest.Config{
		Registry: reg, Sagas: []saga.Definition{s},
		Engine: func(c *saga.EngineConfig) { c.Logger = slog.New(slog.DiscardHandler) },
	}
	if mk != nil {
		cfg.Store = mk(t, reg)
	}
	fx := sagatest.New(t, cfg)
	fx.When(placed("1", 1))
	for n := 1; n < attempts; n++ {
		require.Len(t, runs, n, "seed %d: attempt %d ran once, and not again before its time", seed, n)
		in := fx.Instance("backoff", "1")
		require.Equal(t, saga.StatusParked, in.Status)
		want := min(backoff<<min(n-1, 62), limit)
		if backoff<<min(n-1, 62)>>min(n-1, 62) != backoff {
			want = limit // the doubling passed the largest duration
		}
		wait := in.RetryAt.Sub(runs[n-1])
		require.Equal(t, want, wait, "seed %d: backoff %s, cap %s: wait after attempt %d", seed, backoff, limit, n)
		require.LessOrEqual(t, wait, limit)
		fx.Advance(wait - 1)
		require.Len(t, runs, n, "seed %d: attempt %d ran before its backoff", seed, n+1)
		fx.Advance(1)
	}
	require.Len(t, runs, attempts)
	fx.ExpectStatus("backoff", "1", saga.StatusFailed)
}

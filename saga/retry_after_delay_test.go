package saga_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
)

// TestRetryAfterDelayIsKeptAndCountsAttempts guards the promise in
// saga/doc.go's Failures and bad input section: a failing step is parked
// for a retry "after a backoff (Config.RetryBackoff, doubling up to
// Config.MaxRetryBackoff) or after RetryAfter's delay ... After
// Config.MaxAttempts ... the instance fails". Random RetryAfter delays
// (most far beyond MaxRetryBackoff, which caps only the backoff): each
// retry comes at exactly its delay, never before, the MaxAttempts-th
// failure fails the instance, and a failed instance is not run again by
// itself.
func TestRetryAfterDelayIsKeptAndCountsAttempts(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 11))
		const maxAttempts = 4
		delays := make([]time.Duration, maxAttempts)
		for i := range delays {
			delays[i] = time.Duration(1+rng.IntN(7200)) * time.Second
		}
		attempts := 0
		s := saga.New[orderState]("retry_after", &saga.Config[orderState]{
			MaxAttempts: maxAttempts, RetryBackoff: time.Second, MaxRetryBackoff: 5 * time.Second,
		})
		saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error {
			d := delays[attempts]
			attempts++
			return saga.RetryAfter(d)
		})
		fx := newErrsFixture(t, mk, s)
		fx.When(placed("1", 1))
		for i := 0; i < maxAttempts-1; i++ {
			require.Equal(t, i+1, attempts)
			in := fx.Instance("retry_after", "1")
			require.Equal(t, saga.StatusParked, in.Status, "attempt %d", i+1)
			require.Equal(t, fx.Clock().Now().Add(delays[i]), in.RetryAt, "attempt %d: RetryAfter(%s)", i+1, delays[i])
			require.Equal(t, i+1, in.Attempts, "Info counts the failed runs")
			require.Equal(t, fmt.Sprintf("saga: retry the step after %s", delays[i]), in.LastError, "Info carries the newest failure")
			require.NotEmpty(t, in.ParkedType, "Info names the parked step's event")
			require.NotEmpty(t, in.ParkedEvent)
			require.True(t, in.WaitToken.IsZero(), "a step that waits for no model has no wait token")
			fx.Advance(delays[i] - time.Millisecond)
			require.Equal(t, i+1, attempts, "not before its delay")
			fx.Advance(time.Millisecond)
		}
		require.Equal(t, maxAttempts, attempts)
		in := fx.Instance("retry_after", "1")
		require.Equal(t, saga.StatusFailed, in.Status, "MaxAttempts RetryAfter failures fail the instance")
		require.Contains(t, in.Reason, "Config.MaxAttempts")
		fx.Advance(3 * time.Hour)
		require.Equal(t, maxAttempts, attempts, "a failed instance is not retried by itself")
	})
}

package saga_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestRetentionSweepKeepsToTheSweepTicks checks the cadence the docs give
// the background purge: the driver runs the retention sweep when it starts
// and at every SweepInterval tick, and purges then every ended instance
// whose Retention has passed; the other passes of the driver (woken by
// parks and retry times) never purge. Ticks, wake-ups and clock moves come
// in a random order, so a sweep that keeps to the clock rather than the
// ticks (skipping a tick that comes soon after a wake-up that purged) fails
// it. The cadence is the driver's alone, so it runs on memory only; a
// failing seed replays with -run 'TestRetentionSweepKeepsToTheSweepTicks/seed=N'.
func TestRetentionSweepKeepsToTheSweepTicks(t *testing.T) {
	t.Parallel()
	for seed := range uint64(12) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			t.Parallel()
			sweepCadence(t, seed)
		})
	}
}

func sweepCadence(t *testing.T, seed uint64) {
	t.Helper()
	const (
		interval  = time.Minute
		retention = time.Hour
		instances = 40
	)
	rng := rand.New(rand.NewPCG(seed, 23))
	fx := newFixture(t, nil, setup{config: func(c *sagatest.Config) {
		c.Engine = func(ec *saga.EngineConfig) { ec.SweepInterval, ec.Retention = interval, retention }
	}})
	// Instances end at random times over two retentions, so the sweeps
	// below find some due and some not yet.
	ended := make([]time.Time, instances)
	for i := range ended {
		fx.Clock().Advance(time.Duration(rng.Int64N(int64(2 * retention / instances))))
		complete(fx, fmt.Sprint(i))
		ended[i] = fx.Clock().Now()
	}
	due := func() float64 {
		n := 0
		for _, at := range ended {
			if !at.After(fx.Clock().Now().Add(-retention)) {
				n++
			}
		}
		return float64(n)
	}
	eng := fx.Engine()
	purged := func() float64 { return testutil.ToFloat64(eng.Metrics().Purged.WithLabelValues(orders, "instance")) }
	ticks := make(chan time.Time)
	passes := make(chan bool, 1)
	saga.SetSweepTicks(eng, ticks)
	saga.SetPassHook(eng, func(purged bool) { passes <- purged })
	ctx := context.Background()
	require.NoError(t, eng.Start(ctx))
	t.Cleanup(func() { require.NoError(t, eng.Stop(ctx)) })

	require.True(t, <-passes, "the first pass sweeps")
	require.Equal(t, due(), purged())
	for step := 0; purged() < instances; step++ {
		require.Less(t, step, 10_000, "the clock passed every retention, yet not every instance was purged")
		// Moves of up to two intervals, so a wake-up lands anywhere
		// between two ticks, and past the time a clock-kept sweep would
		// take for its next.
		fx.Clock().Advance(time.Duration(rng.Int64N(int64(2 * interval))))
		before := purged()
		if rng.IntN(2) == 0 {
			saga.WakeDriver(eng)
			require.False(t, <-passes, "step %d: a pass woken between ticks swept", step)
			require.Equal(t, before, purged(), "step %d: a pass woken between ticks purged", step)
			continue
		}
		ticks <- fx.Clock().Now()
		require.True(t, <-passes, "step %d: a tick did not sweep", step)
		require.Equal(t, due(), purged(), "step %d: the sweep at a tick left an instance past its retention", step)
	}
}

package consistency_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
)

// TestStopOfAStoppedTrackerIgnoresAnEndedContext checks "Stop may be
// called more than once, and without Start" with a context that has
// already ended (a shutdown whose budget another component spent): Stop of
// a Tracker with nothing left to wait for succeeds every time, whether it
// never started, ran without a fallback loop, or ran one and was stopped.
// Each is stopped many times, as a select between "done" and the
// context's end picks either about half the time.
func TestStopOfAStoppedTrackerIgnoresAnEndedContext(t *testing.T) {
	t.Parallel()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	const stops = 64
	cases := map[string]struct {
		cfg   *consistency.TrackerConfig
		start bool
	}{
		"NeverStarted":   {cfg: &consistency.TrackerConfig{Positions: newFakePositions()}},
		"WithoutLoop":    {cfg: &consistency.TrackerConfig{}, start: true},
		"LoopWasStopped": {cfg: &consistency.TrackerConfig{Positions: newFakePositions(), FallbackInterval: time.Hour}, start: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tr, err := consistency.NewTracker(tc.cfg)
			require.NoError(t, err)
			if tc.start {
				require.NoError(t, tr.Start(t.Context()))
				require.NoError(t, tr.Stop(t.Context()))
			}
			for i := range stops {
				require.NoError(t, tr.Stop(ended), "stop %d of %d", i+1, stops)
			}
			select {
			case <-tr.Stopped():
			default:
				require.FailNow(t, "Stopped is not closed after Stop succeeded")
			}
		})
	}
}

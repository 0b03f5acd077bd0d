package lag_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
)

// TestStopOfAStoppedMonitorIgnoresAnEndedContext checks "stopping a Monitor
// that never started, or stopping twice, is harmless" with a context that
// has already ended (a shutdown whose budget another component spent):
// Stop of a Monitor with nothing left to wait for succeeds every time,
// whether it never started, was stopped, or ended with Start's context.
// Each is stopped many times, as a select between "stopped" and the
// context's end picks either about half the time.
func TestStopOfAStoppedMonitorIgnoresAnEndedContext(t *testing.T) {
	t.Parallel()
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	const stops = 64
	cases := map[string]func(t *testing.T, mon *lag.Monitor){
		"NeverStarted": func(*testing.T, *lag.Monitor) {},
		"Stopped": func(t *testing.T, mon *lag.Monitor) {
			t.Helper()
			require.NoError(t, mon.Start(t.Context()))
			require.NoError(t, mon.Stop(t.Context()))
		},
		"StartsContextEnded": func(t *testing.T, mon *lag.Monitor) {
			t.Helper()
			ctx, cancel := context.WithCancel(t.Context())
			require.NoError(t, mon.Start(ctx))
			cancel()
			await(t, mon.Stopped(), "Stopped is closed when Start's context ends")
		},
	}
	for name, prepare := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, &lag.Config{Projections: []lag.Target{{Name: "orders"}}})
			prepare(t, b.mon)
			for i := range stops {
				require.NoError(t, b.mon.Stop(ended), "stop %d of %d", i+1, stops)
			}
			await(t, b.mon.Stopped(), "Stopped is closed")
		})
	}
}

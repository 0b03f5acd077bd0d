package lag_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
)

// TestReportJSONRoundTripOfDurations: a Report's durations come back from
// its JSON form exact up to 2^51 ns, within 2 µs beyond, and the
// longest Duration (an SLA that never breaches) as itself; it came back
// as the most negative one.
func TestReportJSONRoundTripOfDurations(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	ds := []time.Duration{0, 1, 1 << 51, math.MaxInt64, math.MaxInt64 - 1}
	for range 2000 {
		// Spread over every magnitude, not only the big ones.
		ds = append(ds, time.Duration(rng.Int64N(math.MaxInt64)>>rng.IntN(63)))
	}
	for _, d := range ds {
		in := lag.Report{Name: "orders", SLA: d, TimeLag: d, HeartbeatAge: d, HorizonAge: d}
		b, err := json.Marshal(in)
		require.NoError(t, err)
		var out lag.Report
		require.NoError(t, json.Unmarshal(b, &out))
		for _, got := range []time.Duration{out.SLA, out.TimeLag, out.HeartbeatAge, out.HorizonAge} {
			switch {
			case d >= math.MaxInt64-time.Microsecond:
				require.InDelta(t, float64(d), float64(got), float64(2*time.Microsecond), "%d ns: %s", d, b)
				require.Positive(t, got, "%d ns: %s", d, b)
			case d <= 1<<51:
				require.Equal(t, d, got, "%d ns: %s", d, b)
			default:
				require.InDelta(t, float64(d), float64(got), float64(2*time.Microsecond), "%d ns: %s", d, b)
			}
		}
	}
	var out lag.Report
	b, err := json.Marshal(lag.Report{SLA: math.MaxInt64})
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &out))
	require.Equal(t, time.Duration(math.MaxInt64), out.SLA, "an SLA that never breaches stays one")
}

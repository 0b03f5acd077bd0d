package bench_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/bench"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestCommandScenarioPrintsJSON runs both methods briefly and checks the
// JSON lines and that every sent command reached its handler; speed is the
// benchmark's business, not the test's.
func TestCommandScenarioPrintsJSON(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{MaxConns: 16})
	var out bytes.Buffer
	res, err := bench.Command(t.Context(), db.Pool, db.Schema, &bench.CommandConfig{Rate: 100, Duration: 300 * time.Millisecond}, &out)
	require.NoError(t, err)
	require.Len(t, res, 2)
	dec := json.NewDecoder(&out)
	for i, method := range []string{bench.MethodWatermillSQL, bench.MethodCommandFeed} {
		var line map[string]any
		require.NoError(t, dec.Decode(&line))
		require.Equal(t, "command", line["scenario"])
		require.Equal(t, method, line["method"], "the baseline comes first")
		require.EqualValues(t, 100, line["rate"])
		require.EqualValues(t, 30, line["commands"], "every step's command reached its handler")
		steps, ok := line["steps_per_sec"].(float64)
		require.True(t, ok, "the line says the rate its steps reached: %v", line)
		require.Positive(t, steps)
		require.Equal(t, res[i].StepsPerSec, steps)
		require.LessOrEqual(t, line["p50_ms"], line["p95_ms"])
		require.LessOrEqual(t, line["p95_ms"], line["p99_ms"])
		require.Equal(t, method, res[i].Method)
		require.Equal(t, bench.MethodWatermillSQL, line["baseline"])
		require.Equal(t, res[0].P50Ms, line["baseline_p50_ms"])
		p50, ok := line["p50_ms"].(float64)
		require.True(t, ok)
		require.Positive(t, p50)
		require.InDelta(t, res[0].P50Ms/p50, line["ratio"], 0.001)
	}
	require.InDelta(t, 1.0, res[0].Ratio, 0.001, "the baseline against itself")
}

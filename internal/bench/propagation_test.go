package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/bench"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestPropagationScenarioPrintsJSON runs every method briefly and checks
// the JSON lines and that every event was waited for; speed is the
// benchmark's business, not the test's.
func TestPropagationScenarioPrintsJSON(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, &pgtest.Config{MaxConns: 12})
	var out bytes.Buffer
	res, err := bench.Propagation(ctx, db.Pool, db.Schema, &bench.PropagationConfig{Rate: 100, Duration: 300 * time.Millisecond}, &out)
	require.NoError(t, err)
	require.Len(t, res, 3)
	dec := json.NewDecoder(&out)
	// The baseline runs first: every later line needs its p99.
	for i, method := range []string{bench.MethodPoll50ms, bench.MethodPoll1s, bench.MethodPush} {
		var line map[string]any
		require.NoError(t, dec.Decode(&line))
		require.Equal(t, "propagation", line["scenario"])
		require.Equal(t, method, line["method"], "the push line comes last")
		require.EqualValues(t, 100, line["rate"])
		require.EqualValues(t, 30, line["events"], "every appended event was waited for")
		appended, ok := line["appended_per_sec"].(float64)
		require.True(t, ok, "the line says the rate its appends reached: %v", line)
		require.Positive(t, appended)
		require.Equal(t, res[i].AppendedPerSec, appended)
		require.LessOrEqual(t, line["p50_ms"], line["p95_ms"])
		require.LessOrEqual(t, line["p95_ms"], line["p99_ms"])
		require.Equal(t, method, res[i].Method)
		require.Equal(t, "poll_50ms", line["baseline"])
		require.Equal(t, res[0].P99Ms, line["baseline_p99_ms"])
		p99, ok := line["p99_ms"].(float64)
		require.True(t, ok)
		require.Positive(t, p99)
		require.InDelta(t, res[0].P99Ms/p99, line["ratio"], 0.001)
	}
	require.InDelta(t, 1.0, res[0].Ratio, 0.001, "the baseline against itself")
	// The push waits saw the projection catch up, not their deadline.
	require.Zero(t, res[2].Stale)
}

// TestPropagationAlwaysMeasuresTheBaselineFirst: a run asked for push only
// still measures poll_50ms first, so the push line has a ratio.
func TestPropagationAlwaysMeasuresTheBaselineFirst(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{MaxConns: 12})
	var out bytes.Buffer
	res, err := bench.Propagation(t.Context(), db.Pool, db.Schema, &bench.PropagationConfig{
		Rate: 100, Duration: 200 * time.Millisecond, Methods: []string{bench.MethodPush, bench.MethodPoll50ms},
	}, &out)
	require.NoError(t, err)
	require.Len(t, res, 2)
	require.Equal(t, bench.MethodPoll50ms, res[0].Method)
	require.Equal(t, bench.MethodPush, res[1].Method)
	require.Equal(t, res[0].P99Ms, res[1].BaselineP99Ms)
	require.Positive(t, res[1].Ratio)
}

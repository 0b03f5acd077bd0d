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
	for i, method := range []string{bench.MethodPoll1s, bench.MethodPoll50ms, bench.MethodPush} {
		var line map[string]any
		require.NoError(t, dec.Decode(&line))
		require.Equal(t, "propagation", line["scenario"])
		require.Equal(t, method, line["method"], "the push line comes last")
		require.EqualValues(t, 100, line["rate"])
		require.EqualValues(t, 30, line["events"], "every appended event was waited for")
		require.LessOrEqual(t, line["p50_ms"], line["p95_ms"])
		require.LessOrEqual(t, line["p95_ms"], line["p99_ms"])
		require.Equal(t, method, res[i].Method)
	}
	// The push waits saw the projection catch up, not their deadline.
	require.Zero(t, res[2].Stale)
}

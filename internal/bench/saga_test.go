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

// TestSagaScenarioPrintsJSON runs the saga scenario small on both stores
// and checks its lines: memory first, PostgreSQL last, every saga
// completed, each against its own baseline. It asserts nothing about
// speed.
func TestSagaScenarioPrintsJSON(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// The processors hold a connection per partition while they apply a
	// unit, the command handlers one each, and the writers theirs.
	db := pgtest.New(t, &pgtest.Config{MaxConns: 30})
	var out bytes.Buffer
	res, err := bench.Saga(ctx, db.Pool, db.Schema, &bench.SagaConfig{Sagas: 40, Concurrency: 4, Partitions: 3, BaselineDuration: 100 * time.Millisecond}, &out)
	require.NoError(t, err)
	require.Len(t, res, 2)
	dec := json.NewDecoder(&out)
	for i, want := range []struct{ store, baseline string }{{"memory", bench.BaselineGoChannel}, {"postgres", bench.BaselineRawCommit}} {
		var line map[string]any
		require.NoError(t, dec.Decode(&line))
		require.Equal(t, "saga", line["scenario"])
		require.Equal(t, want.store, line["store"])
		require.Equal(t, want.baseline, line["baseline"])
		require.EqualValues(t, 40, line["sagas"])
		for _, k := range []string{"sagas_per_sec", "p50_ms", "p99_ms", "baseline_per_sec", "ratio"} {
			require.Positive(t, line[k], k)
		}
		require.LessOrEqual(t, line["p50_ms"], line["p99_ms"])
		require.InDelta(t, res[i].SagasPerSec/res[i].BaselinePerSec, line["ratio"], 0.001)
		require.InDelta(t, res[i].SagasPerSec*bench.StepsPerSaga, line["steps_per_sec"], 1)
		require.EqualValues(t, 3, line["partitions"])
		if want.store == "memory" {
			require.NotContains(t, line, "round_trips_per_saga", "memory makes no round trips")
		} else {
			// A saga's steps append its commands, its command handlers
			// load aggregates and append, and consumers read the feed.
			require.Greater(t, line["round_trips_per_saga"], float64(bench.StepsPerSaga))
		}
	}
	var completed int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(*) FROM rows WHERE namespace = 'converge.saga' AND tbl = 'instances' AND value->>'status' = 'completed'`).Scan(&completed))
	require.Equal(t, 40+40/5, completed, "every saga, the warm-up's too, ran to completion on PostgreSQL")
}

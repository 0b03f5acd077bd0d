package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/bench"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestAppendScenarioPrintsJSON checks the scenario's output shape on a tiny
// run; it asserts nothing about speed (benchmarks measure, tests do not).
func TestAppendScenarioPrintsJSON(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, &pgtest.Config{MaxConns: 6})
	st, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, DisableListen: true})
	require.NoError(t, err)
	defer st.Close()

	var out bytes.Buffer
	res, err := bench.Append(ctx, db.Pool, st, &bench.AppendConfig{Writers: []int{1, 2}, Batches: []int{1, 3}, Duration: 100 * time.Millisecond, Rounds: 1}, &out)
	require.NoError(t, err)
	require.Len(t, res, 4)
	dec := json.NewDecoder(&out)
	for _, want := range res {
		var line map[string]any
		require.NoError(t, dec.Decode(&line))
		require.Equal(t, "append", line["scenario"])
		require.EqualValues(t, want.Writers, line["writers"])
		require.EqualValues(t, want.Batch, line["batch"])
		require.Positive(t, line["events_per_sec"])
		require.Equal(t, "raw_insert", line["baseline"])
		require.Positive(t, line["baseline_per_sec"])
		eps, ok1 := line["events_per_sec"].(float64)
		base, ok2 := line["baseline_per_sec"].(float64)
		require.True(t, ok1 && ok2)
		require.InDelta(t, eps/base, line["ratio"], 0.01)
	}
	var stored int
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT count(*) FROM events").Scan(&stored))
	require.Positive(t, stored)
}

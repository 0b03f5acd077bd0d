package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/bench"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestRebuildScenarioPrintsJSON checks the scenario's output shape and
// that the read model rebuilt a random number of times is complete, on a
// tiny run; it asserts nothing about speed.
func TestRebuildScenarioPrintsJSON(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, &pgtest.Config{MaxConns: 8})
	var out bytes.Buffer
	rounds := 1 + rand.IntN(3)
	res, err := bench.Rebuild(ctx, db.Pool, db.Schema, &bench.RebuildConfig{Events: 1000, Streams: 10, Rounds: rounds}, &out)
	require.NoError(t, err)
	var line map[string]any
	require.NoError(t, json.NewDecoder(&out).Decode(&line))
	require.Equal(t, "rebuild", line["scenario"])
	require.EqualValues(t, 1000, line["events"])
	require.Equal(t, "raw_read", line["baseline"])
	for _, k := range []string{"events_per_sec", "baseline_per_sec", "ratio", "live_per_sec"} {
		require.Positive(t, line[k], k)
	}
	require.InDelta(t, res.EventsPerSec/res.BaselinePerSec, res.Ratio, 0.01)
	var rows, total int
	require.NoError(t, db.Pool.QueryRow(ctx,
		"SELECT count(*), coalesce(sum(value::text::int), 0) FROM rows WHERE namespace = $1 AND tbl = 'totals'",
		fmt.Sprintf("projection/bench_totals/%d", 1+rounds)).Scan(&rows, &total))
	require.Equal(t, 10, rows, "one row per stream in the last rebuilt generation (%d rounds)", rounds)
	want := 0
	for j := range 1000 {
		want += 1 + j%7
	}
	require.Equal(t, want, total)
	var old int
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT count(*) FROM rows WHERE namespace LIKE 'projection/bench_totals/%' AND namespace <> $1",
		fmt.Sprintf("projection/bench_totals/%d", 1+rounds)).Scan(&old))
	require.Zero(t, old, "every older generation was dropped")

	var summary bytes.Buffer
	require.NoError(t, bench.WriteRebuildSummary(&summary, res))
	require.Contains(t, summary.String(), "rebuild: 1000 events")
}

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

// TestContendedScenarioPrintsJSON runs the contended scenario small and
// checks its lines, one per method and writer count, and that each
// method's writers all appended to one stream, gap-free. It asserts
// nothing about speed.
func TestContendedScenarioPrintsJSON(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, &pgtest.Config{MaxConns: 8})
	st, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, DisableListen: true})
	require.NoError(t, err)
	defer st.Close()

	var out bytes.Buffer
	res, err := bench.Contended(ctx, db.Pool, st, &bench.ContendedConfig{Writers: []int{1, 4}, Duration: 200 * time.Millisecond, Rounds: 2}, &out)
	require.NoError(t, err)
	require.Len(t, res, 4)
	dec := json.NewDecoder(&out)
	for i, want := range res {
		var line map[string]any
		require.NoError(t, dec.Decode(&line))
		require.Equal(t, "contended", line["scenario"])
		require.Equal(t, []string{bench.MethodAppend, bench.MethodAppendTx}[i%2], line["method"])
		require.EqualValues(t, []int{1, 1, 4, 4}[i], line["writers"])
		require.Equal(t, bench.BaselineRawInsert, line["baseline"])
		require.Positive(t, line["events_per_sec"])
		require.Positive(t, line["baseline_per_sec"])
		require.InDelta(t, want.EventsPerSec/want.BaselinePerSec, line["ratio"], 0.01)
	}
	// Every stream converge wrote is one method's round: its versions run
	// 1..n with no gap, however many writers shared it.
	rows, err := db.Pool.Query(ctx, "SELECT stream_id, count(*), max(version) FROM events GROUP BY stream_id")
	require.NoError(t, err)
	defer rows.Close()
	streams := 0
	for rows.Next() {
		var id string
		var n, top int64
		require.NoError(t, rows.Scan(&id, &n, &top))
		require.Equal(t, n, top, "stream %s has gaps", id)
		v, err := st.StreamVersion(ctx, id)
		require.NoError(t, err)
		require.Equal(t, top, v)
		streams++
	}
	require.NoError(t, rows.Err())
	require.Equal(t, 4*2, streams, "one stream per method, writer count and round")
}

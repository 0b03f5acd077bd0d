package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/internal/bench"
)

// TestParallelScenarioPrintsJSON runs the parallel scenario small in memory
// and checks its lines and what it stored: each run's events, one per
// stream, all handled. It asserts nothing about speed.
func TestParallelScenarioPrintsJSON(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, err := memstore.New(nil)
	require.NoError(t, err)
	defer store.Close()

	const n = 60
	var out bytes.Buffer
	res, err := bench.Parallel(ctx, store, &bench.ParallelConfig{Events: n, Partitions: []int{1, 3}, HandlerDelay: time.Millisecond}, &out)
	require.NoError(t, err)
	require.Len(t, res, 2)
	dec := json.NewDecoder(&out)
	var base float64
	for i, partitions := range []int{1, 3} {
		var line map[string]any
		require.NoError(t, dec.Decode(&line))
		require.Equal(t, "parallel", line["scenario"])
		require.EqualValues(t, partitions, line["partitions"])
		require.EqualValues(t, 2, line["processes"])
		require.EqualValues(t, n, line["events"])
		require.Equal(t, "partitions_1", line["baseline"])
		eps, ok := line["events_per_sec"].(float64)
		require.True(t, ok)
		require.Positive(t, eps)
		if i == 0 {
			base = eps
		}
		require.InDelta(t, base, line["baseline_per_sec"], 0.01, "every line compares with the first partition count's rate")
		require.InDelta(t, eps/base, line["ratio"], 0.01)
	}

	all, err := store.ReadAll(ctx, events.Token{}, 10*n)
	require.NoError(t, err)
	require.Len(t, all, 2*n, "each run stores its own events")
	perStream := map[string]int{}
	categories := map[string]bool{}
	for _, env := range all {
		perStream[env.StreamID]++
		categories[env.StreamID[:strings.LastIndexByte(env.StreamID, '-')]] = true
	}
	require.Len(t, categories, 2, "each run has a category of its own")
	require.Len(t, perStream, 2*n, "one event per stream, so the partitions' shares follow the hash of many streams")
}

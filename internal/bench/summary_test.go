package bench_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/bench"
)

func TestSummaries(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	require.NoError(t, bench.WriteAppendSummary(&b, []bench.AppendResult{
		{Scenario: "append", Writers: 8, Batch: 10, EventsPerSec: 7100, Baseline: bench.BaselineRawInsert, BaselinePerSec: 10000, Ratio: 0.71},
	}))
	require.Equal(t, `append: converge events/s against raw INSERTs of the same rows (ratio = converge / raw; 1 is parity)
WRITERS  BATCH  CONVERGE/S  RAW/S  RATIO
8        10     7100        10000  0.71
`, b.String())

	b.Reset()
	require.NoError(t, bench.WritePropagationSummary(&b, []bench.PropagationResult{
		{Method: bench.MethodPoll50ms, Rate: 500, AppendedPerSec: 499.9, Events: 3500, P50Ms: 26, P95Ms: 49, P99Ms: 51, Ratio: 1},
		{Method: bench.MethodPush, Rate: 500, AppendedPerSec: 450, Events: 3500, P50Ms: 1.5, P95Ms: 3, P99Ms: 4.1, Ratio: 12.439},
	}))
	require.Equal(t, `propagation at 500 events/s: commit to waiter woken (ratio = poll_50ms p99 / p99; above 1 is sooner)
METHOD     EVENTS  APPENDED/S  P50 MS  P95 MS  P99 MS  STALE  RATIO
poll_50ms  3500    500         26.0    49.0    51.0    0      1.00
push       3500    450         1.5     3.0     4.1     0      12.44
`, b.String(), "450 of 500 is 90 percent: reached")

	b.Reset()
	require.NoError(t, bench.WritePropagationSummary(&b, []bench.PropagationResult{
		{Method: bench.MethodPoll50ms, Rate: 5000, AppendedPerSec: 3012.4, Events: 10000, P50Ms: 52, P95Ms: 56, P99Ms: 65, Ratio: 1},
		{Method: bench.MethodPush, Rate: 5000, AppendedPerSec: 4999.5, Events: 10000, P50Ms: 4.8, P95Ms: 29.3, P99Ms: 85.9, Ratio: 0.757},
	}))
	require.Equal(t, `propagation at 5000 events/s: commit to waiter woken (ratio = poll_50ms p99 / p99; above 1 is sooner)
METHOD     EVENTS  APPENDED/S  P50 MS  P95 MS  P99 MS  STALE  RATIO
poll_50ms  10000   3012        52.0    56.0    65.0    0      1.00
push       10000   5000        4.8     29.3    85.9    0      0.76
did not reach --rate: poll_50ms appended 3012 events/s of the 5000 asked (below 90%); its figures were measured at that lower load
`, b.String())

	b.Reset()
	require.NoError(t, bench.WriteCommandSummary(&b, []bench.CommandResult{
		{Method: bench.MethodWatermillSQL, Rate: 5000, StepsPerSec: 1980, Commands: 25000, P50Ms: 500, P95Ms: 950, P99Ms: 990, Ratio: 1},
		{Method: bench.MethodCommandFeed, Rate: 5000, StepsPerSec: 4600, Commands: 25000, P50Ms: 5, P95Ms: 9, P99Ms: 12, Ratio: 100},
	}))
	require.Equal(t, `command at 5000 steps/s: step commit to handler start, across processes (ratio = watermill_sql p50 / p50; above 1 is sooner)
METHOD         COMMANDS  STEPS/S  P50 MS  P95 MS  P99 MS  RATIO
watermill_sql  25000     1980     500.0   950.0   990.0   1.00
feed           25000     4600     5.0     9.0     12.0    100.00
did not reach --rate: watermill_sql started 1980 steps/s of the 5000 asked (below 90%); its figures were measured at that lower load
`, b.String())

	b.Reset()
	require.NoError(t, bench.WriteContendedSummary(&b, []bench.ContendedResult{
		{Scenario: "contended", Method: bench.MethodAppend, Writers: 8, EventsPerSec: 1500, BaselinePerSec: 6000, Ratio: 0.25},
		{Scenario: "contended", Method: bench.MethodAppendTx, Writers: 8, EventsPerSec: 900, BaselinePerSec: 6000, Ratio: 0.15},
	}))
	require.Equal(t, `contended: events/s appended to one stream by every writer, against raw INSERTs of the same rows (ratio = converge / raw)
METHOD     WRITERS  CONVERGE/S  RAW/S  RATIO
append     8        1500        6000   0.25
append_tx  8        900         6000   0.15
`, b.String())

	b.Reset()
	require.NoError(t, bench.WriteSagaSummary(&b, []bench.SagaResult{
		{Store: "memory", Partitions: 4, Sagas: 500, SagasPerSec: 2500, StepsPerSec: 10000, P50Ms: 150, P99Ms: 200, Baseline: bench.BaselineGoChannel, BaselinePerSec: 150000, Ratio: 0.017},
		{Store: "postgres", Partitions: 4, Sagas: 500, SagasPerSec: 250, StepsPerSec: 1000, P50Ms: 1500, P99Ms: 2000, Baseline: bench.BaselineRawCommit, BaselinePerSec: 12000, Ratio: 0.021, RoundTripsPerSaga: 23.5},
	}))
	require.Equal(t, `saga: 4-step sagas end to end (ratio = sagas/s / baseline per second)
STORE     PARTITIONS  SAGAS  SAGAS/S  STEPS/S  P50 MS  P99 MS  BASELINE          BASELINE/S  RATIO  ROUND TRIPS/SAGA
memory    4           500    2500     10000    150.0   200.0   gochannel_router  150000      0.017  -
postgres  4           500    250      1000     1500.0  2000.0  raw_commit        12000       0.021  23.5
`, b.String())
}

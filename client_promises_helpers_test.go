package converge_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/saga"
)

// stopTimeout bounds every Stop of the tests below, so a Stop that does
// not return fails its test instead of hanging the run.
const stopTimeout = time.Minute

// run starts client and stops it (within stopTimeout) when the test ends.
func run(t *testing.T, client *converge.Client) {
	t.Helper()
	require.NoError(t, client.Start(t.Context()))
	t.Cleanup(func() { stop(t, client) })
}

// stop stops client within stopTimeout.
func stop(t *testing.T, client *converge.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	require.NoError(t, client.Stop(ctx))
}

// stopQuietly stops client within stopTimeout, for deferred stops that
// run when the test may have failed already.
func stopQuietly(client *converge.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	_ = client.Stop(ctx)
}

// counterSum adds up every series of vec.
func counterSum(vec *prometheus.CounterVec) float64 {
	ch := make(chan prometheus.Metric, 64)
	go func() { vec.Collect(ch); close(ch) }()
	var sum float64
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err == nil {
			sum += pb.GetCounter().GetValue()
		}
	}
	return sum
}

// waitSeconds returns the total of the gate waits the engine observed for
// sagaName, of which there must be exactly one.
func waitSeconds(t *testing.T, m *saga.Metrics, sagaName string) time.Duration {
	t.Helper()
	h, ok := m.WaitSeconds.WithLabelValues(sagaName).(prometheus.Metric)
	require.True(t, ok)
	var pb dto.Metric
	require.NoError(t, h.Write(&pb))
	require.EqualValues(t, 1, pb.GetHistogram().GetSampleCount(), "one gate wait observed")
	return time.Duration(pb.GetHistogram().GetSampleSum() * float64(time.Second))
}

// upToCap is the context of a Tracker wait that must end fresh: it waits
// up to the Tracker's cap, not its 2 s default, which another test's open
// transaction on the shared PostgreSQL server (it holds every feed reader
// back) can outlast on a loaded machine.
func upToCap(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), consistency.DefaultMaxTimeout)
	t.Cleanup(cancel)
	return ctx
}

// convergeMetrics lists the names of the converge_ metric families
// registered on reg.
func convergeMetrics(t *testing.T, reg prometheus.Gatherer) []string {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var names []string
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "converge_") {
			names = append(names, mf.GetName())
		}
	}
	return names
}

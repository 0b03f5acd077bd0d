package lag_test

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
)

// scrape GETs the metrics endpoint and returns its samples by series
// ("name{labels}", or the bare name of an unlabelled one), and the TYPE
// line of each metric.
func scrape(t *testing.T, url string) (samples map[string]float64, types map[string]string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain"),
		"the Prometheus text exposition format, got %q", resp.Header.Get("Content-Type"))
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	samples, types = map[string]float64{}, map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, typ, _ := strings.Cut(rest, " ")
			types[name] = typ
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		require.Positive(t, i, "sample line %q", line)
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, "sample line %q", line)
		samples[line[:i]] = v
	}
	require.NoError(t, sc.Err())
	return samples, types
}

// TestHandlerServesTheMonitorsMetrics: Handler serves the registry a
// Monitor registered in, in the Prometheus exposition format: every
// documented metric, labelled by projection (the horizon age unlabelled),
// with the values of the last pass, a breach and its recovery included.
func TestHandlerServesTheMonitorsMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t, &lag.Config{Projections: []lag.Target{
		{Name: "orders", SLA: 2 * time.Second},
		{Name: "report", SLA: lag.AnalyticsSLA, Class: "analytics"},
	}})
	b.store.commit("orders", b.store.append(1))
	head := b.store.append(2) // unprocessed by orders since t0
	b.store.commit("report", head)
	b.store.setHorizon(1500 * time.Millisecond)
	b.clock.Advance(3 * time.Second)
	require.True(t, b.check(t, "orders").Breached)

	srv := httptest.NewServer(lag.Handler(b.reg))
	t.Cleanup(srv.Close)
	samples, types := scrape(t, srv.URL+"/metrics")
	for name, typ := range map[string]string{
		lag.MetricPositionLag:  "gauge",
		lag.MetricTimeLag:      "gauge",
		lag.MetricHeartbeatAge: "gauge",
		lag.MetricSLA:          "gauge",
		lag.MetricBreached:     "gauge",
		lag.MetricBreaches:     "counter",
		lag.MetricHorizonAge:   "gauge",
	} {
		require.Equal(t, typ, types[name], "TYPE of %s", name)
	}
	series := func(metric, projection string) string { return metric + `{projection="` + projection + `"}` }
	for s, want := range map[string]float64{
		series(lag.MetricPositionLag, "orders"):  2,
		series(lag.MetricPositionLag, "report"):  0,
		series(lag.MetricTimeLag, "orders"):      3,
		series(lag.MetricTimeLag, "report"):      0,
		series(lag.MetricHeartbeatAge, "orders"): 3,
		series(lag.MetricSLA, "orders"):          2,
		series(lag.MetricSLA, "report"):          30,
		series(lag.MetricBreached, "orders"):     1,
		series(lag.MetricBreached, "report"):     0,
		series(lag.MetricBreaches, "orders"):     1,
		series(lag.MetricBreaches, "report"):     0,
		lag.MetricHorizonAge:                     1.5,
	} {
		got, ok := samples[s]
		require.True(t, ok, "%s is not served", s)
		require.Equal(t, want, got, s)
	}

	// The endpoint serves each scrape from the registry as it is then.
	b.store.commit("orders", head)
	require.False(t, b.check(t, "orders").Breached)
	samples, _ = scrape(t, srv.URL+"/metrics")
	require.Equal(t, 0.0, samples[series(lag.MetricBreached, "orders")], "recovered")
	require.Equal(t, 1.0, samples[series(lag.MetricBreaches, "orders")], "the counter keeps the breach")
	require.Equal(t, 0.0, samples[series(lag.MetricPositionLag, "orders")])
}

package main

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/internal/clocktest"
)

// /healthz says 503 once the last successful lag pass is older than
// lag.OverdueAfter intervals (a pass hangs, or the loop stopped): the
// reports it would vouch for are old.
func TestServeHealthzRefusesAnOverduePass(t *testing.T) {
	t.Parallel()
	store, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	clock := clocktest.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	const interval = time.Second
	mon, err := lag.NewMonitor(store, &lag.Config{
		Projections: []lag.Target{{Name: "p", SLA: time.Hour}}, Interval: interval, Clock: clock,
		Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	h := opsMux(prometheus.NewRegistry(), mon, http.NotFoundHandler())
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/healthz", nil))
		return rec.Code, rec.Body.String()
	}
	_, err = mon.Check(t.Context())
	require.NoError(t, err)
	code, body := get()
	require.Equal(t, http.StatusOK, code, body)
	clock.Advance(lag.OverdueAfter * interval)
	code, body = get()
	require.Equal(t, http.StatusOK, code, "exactly %d intervals is not overdue yet: %s", lag.OverdueAfter, body)
	clock.Advance(time.Millisecond)
	code, body = get()
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.True(t, strings.HasPrefix(body, "the last lag pass succeeded 3.001s ago"), body)
	_, err = mon.Check(t.Context())
	require.NoError(t, err)
	code, body = get()
	require.Equal(t, http.StatusOK, code, "a new pass clears it: %s", body)
}

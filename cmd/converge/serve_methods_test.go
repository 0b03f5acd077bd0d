package main

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events/memstore"
)

// TestServeOpsPathsRefuseOtherMethods: /metrics, /lag and /healthz answer
// GET and HEAD; any other method is 405 with Allow, not the app's 404.
func TestServeOpsPathsRefuseOtherMethods(t *testing.T) {
	t.Parallel()
	_, h := opsMuxForTest(t)
	for _, path := range []string{"/metrics", "/lag", "/healthz"} {
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), method, path, nil))
			require.Equal(t, http.StatusMethodNotAllowed, rec.Code, "%s %s", method, path)
			require.Equal(t, "GET, HEAD", rec.Header().Get("Allow"), "%s %s", method, path)
		}
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), method, path, nil))
			require.NotEqual(t, http.StatusMethodNotAllowed, rec.Code, "%s %s", method, path)
		}
	}
	// Other paths still reach the app.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/orders", nil))
	require.Equal(t, http.StatusNotFound, rec.Code)
}

// TestServeHealthzBeforeAnyPass: before a lag pass has completed, nothing
// is measured, and /healthz says so with 503 rather than "ok".
func TestServeHealthzBeforeAnyPass(t *testing.T) {
	t.Parallel()
	mon, h := opsMuxForTest(t)
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/healthz", nil))
		return rec.Code, rec.Body.String()
	}
	code, body := get()
	require.Equal(t, http.StatusServiceUnavailable, code, body)
	require.Contains(t, body, "no lag pass has completed yet")
	_, err := mon.Check(t.Context())
	require.NoError(t, err)
	code, body = get()
	require.Equal(t, http.StatusOK, code, body)
}

// opsMuxForTest serves the ops paths of an empty in-memory store in front
// of an app that answers 404, with the lag monitor behind them.
func opsMuxForTest(t *testing.T) (*lag.Monitor, http.Handler) {
	t.Helper()
	store, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	mon, err := lag.NewMonitor(store, &lag.Config{Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	return mon, opsMux(prometheus.NewRegistry(), mon, http.NotFoundHandler())
}

package live_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/live"
)

func TestPageHandler(t *testing.T) {
	t.Parallel()

	t.Run("ServesTheSelfContainedPage", func(t *testing.T) {
		t.Parallel()
		rec := httptest.NewRecorder()
		live.PageHandler("/live").ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/page?entity=order-1", nil))
		require.Equal(t, http.StatusOK, rec.Code)
		require.Equal(t, "text/html; charset=utf-8", rec.Header().Get("Content-Type"))
		csp := rec.Header().Get("Content-Security-Policy")
		require.Contains(t, csp, "default-src 'none'")
		require.Contains(t, csp, "script-src 'sha256-")
		require.Contains(t, csp, "connect-src 'self'")

		body := rec.Body.String()
		for _, id := range []string{`id="status"`, `id="data"`, `id="position"`, `id="log"`, `data-ws="/live"`} {
			require.Contains(t, body, id)
		}
		require.NotContains(t, body, "innerHTML")
		require.NotContains(t, body, " src=", "no external assets")
		require.NotContains(t, body, "<link")
	})

	t.Run("EscapesWSPath", func(t *testing.T) {
		t.Parallel()
		rec := httptest.NewRecorder()
		live.PageHandler(`/live?x="><script>alert(1)</script>`).ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/", nil))
		require.Equal(t, 1, strings.Count(rec.Body.String(), "<script>"), "only the page's own script")
	})

	t.Run("AbsoluteWSURLIsAllowedByCSP", func(t *testing.T) {
		t.Parallel()
		rec := httptest.NewRecorder()
		live.PageHandler("wss://live.example.com/live").ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/", nil))
		require.Contains(t, rec.Header().Get("Content-Security-Policy"), "connect-src 'self' wss://live.example.com;")
	})

	// PageHandler's promise that the CSP allows the connection the page
	// makes: to wsPath's host with ws: or wss:, as page.js turns http:
	// and https: (and the page's own scheme, for a scheme-relative wsPath)
	// into them. An http(s): source or a bare host does not allow a ws:
	// or wss: connection under CSP3.
	t.Run("CSPNamesTheSchemeThePageConnectsWith", func(t *testing.T) {
		t.Parallel()
		for wsPath, want := range map[string]string{
			"/live":                        "connect-src 'self';",
			"ws://live.example.com:81/l":   "connect-src 'self' ws://live.example.com:81;",
			"http://live.example.com:81/l": "connect-src 'self' ws://live.example.com:81;",
			"https://live.example.com/l":   "connect-src 'self' wss://live.example.com;",
			"//live.example.com:81/l":      "connect-src 'self' ws://live.example.com:81 wss://live.example.com:81;",
		} {
			rec := httptest.NewRecorder()
			live.PageHandler(wsPath).ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/", nil))
			require.Contains(t, rec.Header().Get("Content-Security-Policy"), want, wsPath)
		}
	})

	t.Run("GetOnly", func(t *testing.T) {
		t.Parallel()
		rec := httptest.NewRecorder()
		live.PageHandler("/live").ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/", nil))
		require.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	})

	t.Run("PanicsOnEmptyPath", func(t *testing.T) {
		t.Parallel()
		require.Panics(t, func() { live.PageHandler("") })
	})
}

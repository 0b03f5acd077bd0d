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

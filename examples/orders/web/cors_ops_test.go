package web_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/examples/orders/web"
)

// TestCORS_OperatorAPIStaysSameOrigin: with AllowedOrigins ["*"] for the
// order API, a page on another site still cannot retry or cancel a saga
// (its preflight is refused) nor read the operator API (no CORS headers).
func TestCORS_OperatorAPIStaysSameOrigin(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *web.Config) { c.AllowedOrigins = []string{"*"} })
	origin := "https://evil.example.net"
	for _, path := range []string{"/api/sagas/o-1/cancel", "/api/sagas/o-1/retry"} {
		pre := b.do(t, http.MethodOptions, path, http.Header{"Origin": {origin}, "Access-Control-Request-Method": {"POST"}}, nil)
		require.Equal(t, http.StatusForbidden, pre.status, path)
		require.Empty(t, pre.header.Get("Access-Control-Allow-Origin"), path)
	}
	for _, path := range []string{"/api/sagas", "/api/dead-letters", "/api/lag"} {
		r := b.get(t, path, http.Header{"Origin": {origin}})
		require.Empty(t, r.header.Get("Access-Control-Allow-Origin"), "%s is not readable from another site", path)
	}
	pre := b.do(t, http.MethodOptions, "/orders", http.Header{"Origin": {origin}, "Access-Control-Request-Method": {"POST"}}, nil)
	require.Equal(t, http.StatusNoContent, pre.status, "the order API takes the allowed origins")
}

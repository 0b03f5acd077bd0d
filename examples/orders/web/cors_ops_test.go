package web_test

import (
	"math/rand/v2"
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

// TestCORS_RefusalSaysWhatWouldHelp: a preflight to the operator API is
// refused saying it takes same-origin requests only, whether or not the
// origin is allowed (allowing it would not help); a preflight to the
// order API from an origin that is not allowed is told to allow it.
func TestCORS_RefusalSaysWhatWouldHelp(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 12))
	allowed := randomOrigin(rng)
	b := setup(t, func(c *web.Config) { c.AllowedOrigins = []string{allowed} })
	preflight := func(origin, path string) response {
		return b.do(t, http.MethodOptions, path, http.Header{"Origin": {origin}, "Access-Control-Request-Method": {"POST"}}, nil)
	}
	for range 20 {
		other := randomOrigin(rng)
		if other == allowed {
			continue
		}
		for _, origin := range []string{allowed, other} {
			path := []string{"/api/sagas", "/api/sagas/o-1/cancel", "/api/sagas/o-1/retry", "/api/dead-letters", "/api/lag"}[rng.IntN(5)]
			detail := preflight(origin, path).problem(t, http.StatusForbidden, web.ProblemForbiddenOrigin)["detail"]
			require.Contains(t, detail, "the operator API under /api/ takes same-origin requests only", "%s from %s", path, origin)
			require.NotContains(t, detail, "add it to the allowed origins", "%s from %s", path, origin)
		}
		detail := preflight(other, "/orders").problem(t, http.StatusForbidden, web.ProblemForbiddenOrigin)["detail"]
		require.Contains(t, detail, "this server does not take cross-origin requests from "+other+" (add it to the allowed origins)")
		require.Equal(t, http.StatusNoContent, preflight(allowed, "/orders").status)
	}
}

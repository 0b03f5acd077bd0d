package web_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/examples/orders/web"
)

// TestCORS_AnyOrigin: with AllowedOrigins ["*"], a page from any site
// (random origins) may call the API, read its consistency headers and open
// the live WebSocket; with the default, same-origin only, the same
// WebSocket handshake from another site is refused.
func TestCORS_AnyOrigin(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 9))
	anyOrigin := setup(t, func(c *web.Config) { c.AllowedOrigins = []string{"*"} })
	sameOrigin := setup(t, nil)
	dialFrom := func(b *bundle, origin string) int {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(b.url, "http")+web.PathLive+"?entity=order-1", &websocket.DialOptions{
			HTTPClient: b.client, HTTPHeader: http.Header{"Origin": {origin}},
		})
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err == nil {
			_ = conn.CloseNow()
		}
		require.NotNil(t, resp, "dial error %v", err)
		return resp.StatusCode
	}
	for range 5 {
		origin := fmt.Sprintf("https://site-%d.example%d.net", rng.IntN(1000), rng.IntN(10))
		pre := anyOrigin.do(t, http.MethodOptions, "/orders", http.Header{"Origin": {origin}, "Access-Control-Request-Method": {"POST"}}, nil)
		require.Equal(t, http.StatusNoContent, pre.status, origin)
		require.Equal(t, origin, pre.header.Get("Access-Control-Allow-Origin"), "the origin is echoed, not \"*\", so Vary: Origin holds")
		r := anyOrigin.get(t, "/orders/o-001", http.Header{"Origin": {origin}})
		require.Equal(t, origin, r.header.Get("Access-Control-Allow-Origin"))
		require.Contains(t, r.header.Get("Access-Control-Expose-Headers"), consistency.HeaderStale)
		require.Equal(t, http.StatusSwitchingProtocols, dialFrom(anyOrigin, origin), "the live socket takes %s", origin)

		require.Empty(t, sameOrigin.get(t, "/orders/o-001", http.Header{"Origin": {origin}}).header.Get("Access-Control-Allow-Origin"))
		require.Equal(t, http.StatusForbidden, dialFrom(sameOrigin, origin), "same-origin only by default")
	}
	require.Equal(t, http.StatusSwitchingProtocols, dialFrom(sameOrigin, sameOrigin.url), "the page's own origin is always allowed")
}

package live_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/consistency/live"
)

// TestHub_RefusalsAreProblemDetails: every request the Handler refuses
// before the upgrade, whether the Hub or the WebSocket handshake refuses
// it, is answered with problem details saying what to do, with the
// status's own headers kept.
func TestHub_RefusalsAreProblemDetails(t *testing.T) {
	t.Parallel()
	hub, b := setup(t, &live.Config{MaxSubscriptionsPerClient: 1, MaxClients: 1})

	// requireProblem checks resp is problem details of status whose detail
	// says want, and returns resp's header.
	requireProblem := func(resp *http.Response, status int, want string) http.Header {
		t.Helper()
		body := readBody(t, resp)
		require.Equal(t, status, resp.StatusCode, "body %s", body)
		require.Equal(t, consistency.ContentTypeProblem, resp.Header.Get("Content-Type"))
		var p consistency.Problem
		require.NoError(t, json.Unmarshal([]byte(body), &p), "body %s", body)
		require.Equal(t, status, p.Status)
		require.Equal(t, "about:blank", p.Type)
		require.Equal(t, http.StatusText(status), p.Title)
		require.Contains(t, p.Detail, want)
		return resp.Header
	}
	// dialFrom dials from origin and returns the refusal.
	dialFrom := func(origin string) *http.Response {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), ioTimeout)
		defer cancel()
		conn, resp, err := websocket.Dial(ctx, b.wsURL, &websocket.DialOptions{
			HTTPClient: b.server.Client(),
			HTTPHeader: http.Header{"Origin": {origin}},
		})
		if err == nil {
			_ = conn.CloseNow()
		}
		require.Error(t, err, "the dial from %s was not refused", origin)
		require.NotNil(t, resp, "dial error %v", err)
		return resp
	}

	requireProblem(b.get(t, b.entityURL("a", "b")), http.StatusBadRequest, "2 entities in the query, the limit is 1")
	h := requireProblem(b.get(t, b.entityURL("a")), http.StatusUpgradeRequired, "connect with a WebSocket client")
	require.Equal(t, "websocket", h.Get("Upgrade"), "a 426 names the protocol to upgrade to")
	requireProblem(dialFrom("https://evil.example.net"), http.StatusForbidden, "Config.AllowedOrigins")
	require.Zero(t, hub.Stats().Clients, "refused handshakes leave no client behind")

	conn := b.dial(t)
	h = requireProblem(b.get(t, b.wsURL), http.StatusServiceUnavailable, "MaxClients is 1")
	require.Equal(t, "5", h.Get("Retry-After"))
	_ = conn.CloseNow()

	hub.Close()
	requireProblem(b.get(t, b.wsURL), http.StatusServiceUnavailable, "retry later")
}

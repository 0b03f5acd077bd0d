package live_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/consistency/live"
)

// unwrapOnly is a middleware's ResponseWriter in the Go 1.20 style: it
// exposes the writer it wraps through Unwrap (which http.ResponseController
// follows) instead of implementing http.Hijacker itself.
type unwrapOnly struct{ http.ResponseWriter }

func (u unwrapOnly) Unwrap() http.ResponseWriter { return u.ResponseWriter }

// opaqueWriter is a middleware's ResponseWriter that neither implements
// http.Hijacker nor unwraps: a connection served through it cannot be
// hijacked, as with an HTTP/2 writer.
type opaqueWriter struct{ http.ResponseWriter }

// serveThrough serves the Hub's Handler with every ResponseWriter wrapped
// by wrap, and returns the Handler's WebSocket URL.
func serveThrough(t *testing.T, hub *live.Hub, wrap func(http.ResponseWriter) http.ResponseWriter) string {
	t.Helper()
	h := hub.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(wrap(w), r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(hub.Close) // runs first: Close waits for the connections srv.Close does not track
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// TestHub_HandlerBehindUnwrapMiddleware checks that Hub.Handler serves
// WebSocket clients (the package doc's Protocol) behind a middleware whose
// ResponseWriter only offers Unwrap: the connection is hijacked through
// it, and the client is subscribed and gets its updates.
func TestHub_HandlerBehindUnwrapMiddleware(t *testing.T) {
	t.Parallel()
	hub, _ := setup(t, nil)
	u := serveThrough(t, hub, func(w http.ResponseWriter) http.ResponseWriter { return unwrapOnly{w} })

	ctx, cancel := context.WithTimeout(t.Context(), ioTimeout)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, u+"?entity=order-1", nil)
	var body string
	if err != nil && resp != nil && resp.Body != nil {
		body = readBody(t, resp)
	}
	closeBody(resp)
	require.NoError(t, err, "response body: %s", body)
	t.Cleanup(func() { _ = conn.CloseNow() })
	readType(t, conn, live.TypeSubscribed, "order-1")
	hub.Publish("order-1", json.RawMessage(row(1)), tok(1))
	readUpdate(t, conn, "order-1", row(1), tok(1))
}

// TestHub_UnhijackableWriterIsRefusedBeforeTheUpgrade checks Handler's
// promise that a request it refuses before the upgrade is answered with
// problem details, for a ResponseWriter whose connection cannot be
// hijacked: the client gets a 501 saying what to fix, not a 101 Switching
// Protocols on a connection nobody serves, and no client is left behind.
func TestHub_UnhijackableWriterIsRefusedBeforeTheUpgrade(t *testing.T) {
	t.Parallel()
	hub, _ := setup(t, nil)
	u := serveThrough(t, hub, func(w http.ResponseWriter) http.ResponseWriter { return opaqueWriter{w} })

	ctx, cancel := context.WithTimeout(t.Context(), ioTimeout)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, u+"?entity=order-1", nil)
	if err == nil {
		_ = conn.CloseNow()
	}
	require.Error(t, err, "the upgrade through a writer that cannot be hijacked succeeded")
	require.NotNil(t, resp, "dial error %v", err)
	body := readBody(t, resp)
	require.Equal(t, http.StatusNotImplemented, resp.StatusCode, "body %s", body)
	require.Equal(t, consistency.ContentTypeProblem, resp.Header.Get("Content-Type"))
	var p consistency.Problem
	require.NoError(t, json.Unmarshal([]byte(body), &p), "body %s", body)
	require.Equal(t, http.StatusNotImplemented, p.Status)
	require.Contains(t, p.Detail, "http.Hijacker or Unwrap")
	require.Zero(t, hub.Stats().Clients, "the refused handshake left a client behind")
}

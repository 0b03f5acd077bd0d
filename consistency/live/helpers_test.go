package live_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/live"
	"github.com/converge-es/converge/events"
)

// ioTimeout bounds every read and write a test does on a connection.
const ioTimeout = 10 * time.Second

// testBundle holds what setup built around the Hub under test.
type testBundle struct {
	server *httptest.Server
	// wsURL is the Hub's WebSocket endpoint; pageURL serves PageHandler.
	wsURL   string
	pageURL string
}

// setup returns a Hub configured by cfg (nil for defaults, quiet logger
// unless set), served at /live with the demo page at /page. Cleanup closes
// the Hub, then the server.
func setup(t *testing.T, cfg *live.Config) (*live.Hub, *testBundle) {
	t.Helper()
	return setupWithServer(t, cfg, nil)
}

// setupWithServer is setup with a hook to change the server before it
// starts (to wrap its listener).
func setupWithServer(t *testing.T, cfg *live.Config, prepare func(*httptest.Server)) (*live.Hub, *testBundle) {
	t.Helper()
	if cfg == nil {
		cfg = &live.Config{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	hub, err := live.NewHub(cfg)
	require.NoError(t, err)

	mux := http.NewServeMux()
	mux.Handle("/live", hub.Handler())
	mux.Handle("/page", live.PageHandler("/live"))
	srv := httptest.NewUnstartedServer(mux)
	if prepare != nil {
		prepare(srv)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(hub.Close) // runs first: Close waits for the connections srv.Close does not track

	return hub, &testBundle{
		server:  srv,
		wsURL:   "ws" + strings.TrimPrefix(srv.URL, "http") + "/live",
		pageURL: srv.URL + "/page",
	}
}

// dial connects to the Hub, subscribed to entities in the URL, and closes
// the connection at cleanup.
func (b *testBundle) dial(t *testing.T, entities ...string) *websocket.Conn {
	t.Helper()
	return b.dialWith(t, &websocket.DialOptions{HTTPClient: b.server.Client()}, entities...)
}

func (b *testBundle) dialWith(t *testing.T, opts *websocket.DialOptions, entities ...string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, b.entityURL(entities...), opts)
	closeBody(resp)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.CloseNow() })
	return conn
}

// entityURL is the WebSocket URL subscribing to entities.
func (b *testBundle) entityURL(entities ...string) string {
	if len(entities) == 0 {
		return b.wsURL
	}
	return b.wsURL + "?" + url.Values{"entity": entities}.Encode()
}

// read returns the next message on conn.
func read(t *testing.T, conn *websocket.Conn) live.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	typ, b, err := conn.Read(ctx)
	require.NoError(t, err)
	require.Equal(t, websocket.MessageText, typ)
	var m live.Message
	require.NoError(t, json.Unmarshal(b, &m), "message %s", b)
	return m
}

// readType reads the next message and checks its type and entity.
func readType(t *testing.T, conn *websocket.Conn, typ, entity string) live.Message {
	t.Helper()
	m := read(t, conn)
	require.Equal(t, typ, m.Type, "message %+v", m)
	require.Equal(t, entity, m.Entity, "message %+v", m)
	return m
}

// readUpdate reads the next message and checks it is the update of entity
// with data at pos.
func readUpdate(t *testing.T, conn *websocket.Conn, entity, data string, pos events.Token) {
	t.Helper()
	m := readType(t, conn, live.TypeUpdated, entity)
	require.JSONEq(t, data, string(m.Data))
	require.Equal(t, pos.String(), m.Position)
}

// send writes one text message.
func send(t *testing.T, conn *websocket.Conn, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	require.NoError(t, conn.Write(ctx, websocket.MessageText, []byte(msg)))
}

// readClose reads until the connection closes, and returns the close error.
func readClose(t *testing.T, conn *websocket.Conn) websocket.CloseError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	for {
		_, _, err := conn.Read(ctx)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		require.ErrorAs(t, err, &ce)
		return ce
	}
}

// tok is the position of test event i.
func tok(i int) events.Token { return events.MakeToken(1, uint64(i)) }

// row is the read-model row JSON of test event i.
func row(i int) string { return `{"seq":` + strconv.Itoa(i) + `,"status":"placed"}` }

// closeBody closes the body of a WebSocket handshake response, which
// websocket.Dial leaves nil on success.
func closeBody(resp *http.Response) {
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
}

// get does a plain HTTP GET of u, with ws:// turned into http://.
func (b *testBundle) get(t *testing.T, u string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, strings.Replace(u, "ws://", "http://", 1), nil)
	require.NoError(t, err)
	resp, err := b.server.Client().Do(req)
	require.NoError(t, err)
	return resp
}

// readBody reads and closes resp's body.
func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

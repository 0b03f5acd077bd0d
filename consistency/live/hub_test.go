package live_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/live"
	"github.com/converge-es/converge/events"
)

func TestHub_SubscribeViaQuery(t *testing.T) {
	t.Parallel()
	hub, b := setup(t, nil)
	conn := b.dial(t, "order-1", "order-2")
	readType(t, conn, live.TypeSubscribed, "order-1")
	readType(t, conn, live.TypeSubscribed, "order-2")

	const n = 50
	for i := 1; i <= n; i++ {
		hub.Publish("order-1", json.RawMessage(row(i)), tok(i))
		hub.Publish("order-3", json.RawMessage(row(i)), tok(i)) // not subscribed
	}
	hub.Publish("order-2", json.RawMessage(`{"last":true}`), tok(n+1))
	for i := 1; i <= n; i++ {
		readUpdate(t, conn, "order-1", row(i), tok(i))
	}
	readUpdate(t, conn, "order-2", `{"last":true}`, tok(n+1))

	st := hub.Stats()
	require.Equal(t, 1, st.Clients)
	require.Equal(t, 2, st.Subscriptions)
	require.Equal(t, 2, st.Entities)
}

func TestHub_SubscribeViaMessage(t *testing.T) {
	t.Parallel()
	hub, b := setup(t, nil)
	conn := b.dial(t)
	send(t, conn, `{"action":"subscribe","entity":"order-1"}`)
	readType(t, conn, live.TypeSubscribed, "order-1")

	const n = 20
	for i := 1; i <= n; i++ {
		hub.Publish("order-1", json.RawMessage(row(i)), tok(i))
	}
	for i := 1; i <= n; i++ {
		readUpdate(t, conn, "order-1", row(i), tok(i))
	}

	// Subscribing again is acknowledged again, and does not duplicate.
	send(t, conn, `{"action":"subscribe","entity":"order-1"}`)
	readType(t, conn, live.TypeSubscribed, "order-1")
	hub.Publish("order-1", nil, tok(n+1))
	m := readType(t, conn, live.TypeUpdated, "order-1")
	require.JSONEq(t, `null`, string(m.Data), "nil data is sent as null")
	require.Equal(t, 1, hub.Stats().Subscriptions)
}

func TestHub_PositionIsTheTokenString(t *testing.T) {
	t.Parallel()
	hub, b := setup(t, nil)
	conn := b.dial(t, "order-1")
	readType(t, conn, live.TypeSubscribed, "order-1")

	pos := events.MakeToken(1<<40, 7)
	hub.Publish("order-1", json.RawMessage(` { "a" : 1 } `), pos)
	m := readType(t, conn, live.TypeUpdated, "order-1")
	got, err := events.ParseToken(m.Position)
	require.NoError(t, err)
	require.Equal(t, pos, got)
	require.Equal(t, `{"a":1}`, string(m.Data), "data is compacted, not changed")
}

func TestHub_Unsubscribe(t *testing.T) {
	t.Parallel()
	hub, b := setup(t, nil)
	conn := b.dial(t, "order-1", "order-2")
	readType(t, conn, live.TypeSubscribed, "order-1")
	readType(t, conn, live.TypeSubscribed, "order-2")

	hub.Publish("order-1", json.RawMessage(row(1)), tok(1))
	send(t, conn, `{"action":"unsubscribe","entity":"order-1"}`)
	readUpdate(t, conn, "order-1", row(1), tok(1)) // queued before the unsubscribe
	readType(t, conn, live.TypeUnsubscribed, "order-1")

	// Updates are delivered in publish order, so had order-1's been sent it
	// would come before order-2's.
	hub.Publish("order-1", json.RawMessage(row(2)), tok(2))
	hub.Publish("order-2", json.RawMessage(row(3)), tok(3))
	readUpdate(t, conn, "order-2", row(3), tok(3))

	st := hub.Stats()
	require.Equal(t, 1, st.Subscriptions)
	require.Equal(t, 1, st.Entities)

	// Unsubscribing from what one does not follow is acknowledged too.
	send(t, conn, `{"action":"unsubscribe","entity":"order-9"}`)
	readType(t, conn, live.TypeUnsubscribed, "order-9")
}

// smallBuffer is the socket buffer size of the slow-client test, so that a
// client that does not read blocks the server's writes after some hundred
// kilobytes, not after the megabytes autotuning allows. (Much smaller
// buffers, under the 64 KiB loopback MSS, make TCP crawl on zero-window
// probes.)
const smallBuffer = 128 << 10

type smallBufferListener struct{ net.Listener }

func (l smallBufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(smallBuffer)
	}
	return c, err
}

func TestHub_SlowClientIsDroppedWithoutBlockingPublish(t *testing.T) {
	t.Parallel()
	const n = 300
	hub, b := setupWithServer(t, &live.Config{
		SendBuffer: 4,
		// A Publish that waited for the slow client would wait this long.
		WriteTimeout: time.Minute,
	}, func(s *httptest.Server) { s.Listener = smallBufferListener{s.Listener} })

	slowTransport := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetReadBuffer(smallBuffer)
			}
			return c, err
		},
	}
	t.Cleanup(slowTransport.CloseIdleConnections)
	// The slow client never reads (until the end). Its subscription, from
	// the URL, is in place when Dial returns.
	slow := b.dialWith(t, &websocket.DialOptions{HTTPClient: &http.Client{Transport: slowTransport}}, "order-1")
	fast := b.dial(t, "order-1")
	readType(t, fast, live.TypeSubscribed, "order-1")

	pad := strings.Repeat("x", 8<<10)
	data := func(i int) string { return `{"seq":` + strconv.Itoa(i) + `,"pad":"` + pad + `"}` }
	var slowest, total time.Duration
	for i := 1; i <= n; i++ {
		start := time.Now()
		hub.Publish("order-1", json.RawMessage(data(i)), tok(i))
		d := time.Since(start)
		total += d
		slowest = max(slowest, d)
		if i%2 == 0 { // the fast client keeps up
			readUpdate(t, fast, "order-1", data(i-1), tok(i-1))
			readUpdate(t, fast, "order-1", data(i), tok(i))
		}
	}
	t.Logf("%d publishes took %s in all, the slowest %s", n, total, slowest)
	require.Less(t, slowest, time.Second, "Publish waited for a client")

	st := hub.Stats()
	require.EqualValues(t, 1, st.Dropped)
	require.Equal(t, 1, st.Clients)

	// Once it reads, the slow client learns why it was dropped.
	ce := readClose(t, slow)
	require.Equal(t, websocket.StatusPolicyViolation, ce.Code)
	require.Contains(t, ce.Reason, "too slow")
}

func TestHub_BadClientMessages(t *testing.T) {
	t.Parallel()
	hub, b := setup(t, &live.Config{MaxSubscriptionsPerClient: 2})
	conn := b.dial(t)

	for _, tt := range []struct {
		name, msg, want string
	}{
		{"NotJSON", `subscribe order-1`, "malformed request"},
		{"TruncatedJSON", `{"action":"subscribe",`, "malformed request"},
		{"WrongShape", `["subscribe","order-1"]`, "malformed request"},
		{"WrongFieldType", `{"action":"subscribe","entity":42}`, "malformed request"},
		{"Null", `null`, "missing action"},
		{"NoAction", `{"entity":"order-1"}`, "missing action"},
		{"UnknownAction", `{"action":"dance","entity":"order-1"}`, `unknown action "dance"`},
		{"EmptyEntity", `{"action":"subscribe"}`, "entity is empty"},
		{"LongEntity", `{"action":"subscribe","entity":"` + strings.Repeat("a", live.MaxEntityIDLen+1) + `"}`, "201 bytes"},
	} {
		send(t, conn, tt.msg)
		m := read(t, conn)
		require.Equal(t, live.TypeError, m.Type, tt.name)
		require.Contains(t, m.Error, tt.want, tt.name)
	}

	ctx, cancel := context.WithTimeout(t.Context(), ioTimeout)
	defer cancel()
	require.NoError(t, conn.Write(ctx, websocket.MessageBinary, []byte(`{"action":"subscribe","entity":"order-1"}`)))
	require.Contains(t, readType(t, conn, live.TypeError, "").Error, "binary")

	// An entity id of exactly the limit is fine; past the subscription
	// limit is not.
	long := strings.Repeat("a", live.MaxEntityIDLen)
	send(t, conn, `{"action":"subscribe","entity":"`+long+`"}`)
	readType(t, conn, live.TypeSubscribed, long)
	send(t, conn, `{"action":"subscribe","entity":"order-1"}`)
	readType(t, conn, live.TypeSubscribed, "order-1")
	send(t, conn, `{"action":"subscribe","entity":"order-2"}`)
	require.Contains(t, readType(t, conn, live.TypeError, "order-2").Error, "too many subscriptions")

	// The connection still works.
	hub.Publish("order-1", json.RawMessage(row(1)), tok(1))
	readUpdate(t, conn, "order-1", row(1), tok(1))

	// An oversized message ends it, with a reason.
	big := `{"action":"subscribe","entity":"` + strings.Repeat("a", live.MaxClientMessageSize) + `"}`
	require.NoError(t, conn.Write(ctx, websocket.MessageText, []byte(big)))
	ce := readClose(t, conn)
	require.Equal(t, websocket.StatusMessageTooBig, ce.Code)
	require.Eventually(t, func() bool { return hub.Stats().Clients == 0 }, ioTimeout, 5*time.Millisecond)
}

func TestHub_BadQuery(t *testing.T) {
	t.Parallel()
	_, b := setup(t, &live.Config{MaxSubscriptionsPerClient: 2})

	for _, tt := range []struct {
		name     string
		entities []string
		want     string
	}{
		{"Empty", []string{""}, "entity is empty"},
		{"TooLong", []string{strings.Repeat("a", live.MaxEntityIDLen+1)}, "201 bytes"},
		{"InvalidUTF8", []string{"\xff"}, "UTF-8"},
		{"TooMany", []string{"a", "b", "c"}, "3 entities"},
	} {
		resp := b.get(t, b.entityURL(tt.entities...))
		body := readBody(t, resp)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, tt.name)
		require.Contains(t, body, tt.want, tt.name)
	}

	// Duplicates count once.
	conn := b.dial(t, "a", "b", "a")
	readType(t, conn, live.TypeSubscribed, "a")
	readType(t, conn, live.TypeSubscribed, "b")
}

func TestHub_DeadClientIsRemoved(t *testing.T) {
	t.Parallel()
	hub, b := setup(t, nil)
	conn := b.dial(t, "order-1")
	readType(t, conn, live.TypeSubscribed, "order-1")
	require.Equal(t, 1, hub.Stats().Clients)

	// Close TCP with no close handshake, as a crashed client would.
	require.NoError(t, conn.CloseNow())
	require.Eventually(t, func() bool {
		st := hub.Stats()
		return st.Clients == 0 && st.Subscriptions == 0 && st.Entities == 0
	}, ioTimeout, 5*time.Millisecond)
	hub.Publish("order-1", json.RawMessage(row(1)), tok(1)) // nobody left: no panic, no block
	require.Zero(t, hub.Stats().Dropped)
}

func TestHub_UnresponsivePeerIsPingedOut(t *testing.T) {
	t.Parallel()
	hub, b := setup(t, &live.Config{PingInterval: 20 * time.Millisecond, WriteTimeout: 100 * time.Millisecond})
	// A client that never reads never answers pings.
	b.dial(t, "order-1")
	require.Eventually(t, func() bool { return hub.Stats().Clients == 0 }, ioTimeout, 5*time.Millisecond)
}

func TestHub_Close(t *testing.T) {
	t.Parallel()
	hub, b := setup(t, nil)
	c1 := b.dial(t, "order-1")
	c2 := b.dial(t)
	readType(t, c1, live.TypeSubscribed, "order-1")
	require.Equal(t, 2, hub.Stats().Clients)

	closed := make(chan websocket.CloseError, 2)
	for _, c := range []*websocket.Conn{c1, c2} {
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), ioTimeout)
			defer cancel()
			for {
				if _, _, err := c.Read(ctx); err != nil {
					var ce websocket.CloseError
					errors.As(err, &ce)
					closed <- ce
					return
				}
			}
		}()
	}
	hub.Close()
	for range 2 {
		ce := <-closed
		require.Equal(t, websocket.StatusGoingAway, ce.Code)
	}
	require.Zero(t, hub.Stats().Clients)

	hub.Publish("order-1", json.RawMessage(row(1)), tok(1)) // after Close: nothing, no panic
	hub.Close()                                             // again: no-op

	resp := b.get(t, b.wsURL)
	readBody(t, resp)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
}

func TestHub_MaxClients(t *testing.T) {
	t.Parallel()
	hub, b := setup(t, &live.Config{MaxClients: 1})
	conn := b.dial(t, "order-1")
	readType(t, conn, live.TypeSubscribed, "order-1")

	ctx, cancel := context.WithTimeout(t.Context(), ioTimeout)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, b.wsURL, &websocket.DialOptions{HTTPClient: b.server.Client()})
	closeBody(resp)
	require.Error(t, err)
	require.NotNil(t, resp)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.NotEmpty(t, resp.Header.Get("Retry-After"))
	require.EqualValues(t, 1, hub.Stats().Rejected)
}

func TestHub_Origins(t *testing.T) {
	t.Parallel()
	_, b := setup(t, &live.Config{AllowedOrigins: []string{"app.example.com"}})
	// dialFrom returns the handshake's status code.
	dialFrom := func(origin string) int {
		ctx, cancel := context.WithTimeout(t.Context(), ioTimeout)
		defer cancel()
		conn, resp, err := websocket.Dial(ctx, b.wsURL, &websocket.DialOptions{
			HTTPClient: b.server.Client(),
			HTTPHeader: http.Header{"Origin": {origin}},
		})
		closeBody(resp)
		if err == nil {
			_ = conn.CloseNow()
		}
		require.NotNil(t, resp, "dial error %v", err)
		return resp.StatusCode
	}
	require.Equal(t, http.StatusSwitchingProtocols, dialFrom("https://app.example.com"))
	require.Equal(t, http.StatusSwitchingProtocols, dialFrom(b.server.URL)) // same origin
	require.Equal(t, http.StatusForbidden, dialFrom("https://evil.example.net"))
}

func TestHub_Snapshot(t *testing.T) {
	t.Parallel()

	t.Run("RaceWithPublish", func(t *testing.T) {
		t.Parallel()
		called := make(chan struct{})
		release := make(chan struct{})
		hub, b := setup(t, &live.Config{
			Snapshot: func(ctx context.Context, id string) (json.RawMessage, events.Token, bool, error) {
				close(called)
				<-release
				return json.RawMessage(row(5)), tok(5), true, nil
			},
		})
		conn := b.dial(t)
		send(t, conn, `{"action":"subscribe","entity":"order-1"}`)
		readType(t, conn, live.TypeSubscribed, "order-1")
		<-called
		// Published while the snapshot is read: 4 and 5 are in the
		// snapshot, 6 is not.
		hub.Publish("order-1", json.RawMessage(row(4)), tok(4))
		hub.Publish("order-1", json.RawMessage(row(5)), tok(5))
		hub.Publish("order-1", json.RawMessage(row(6)), tok(6))
		close(release)

		m := readType(t, conn, live.TypeUpdated, "order-1")
		require.True(t, m.Snapshot)
		require.JSONEq(t, row(5), string(m.Data))
		require.Equal(t, tok(5).String(), m.Position)
		readUpdate(t, conn, "order-1", row(6), tok(6))
		hub.Publish("order-1", json.RawMessage(row(7)), tok(7))
		readUpdate(t, conn, "order-1", row(7), tok(7))
	})

	// A row committed before the snapshot read it, and published only
	// once the subscription is live, is not sent again.
	t.Run("PublishedAfterTheHandOver", func(t *testing.T) {
		t.Parallel()
		hub, b := setup(t, &live.Config{
			Snapshot: func(ctx context.Context, id string) (json.RawMessage, events.Token, bool, error) {
				return json.RawMessage(row(5)), tok(5), true, nil
			},
		})
		conn := b.dial(t)
		send(t, conn, `{"action":"subscribe","entity":"order-1"}`)
		readType(t, conn, live.TypeSubscribed, "order-1")
		require.True(t, readType(t, conn, live.TypeUpdated, "order-1").Snapshot)
		hub.Publish("order-1", json.RawMessage(row(5)), tok(5))
		hub.Publish("order-1", json.RawMessage(row(6)), tok(6))
		readUpdate(t, conn, "order-1", row(6), tok(6))
		// Past the snapshot, updates go through as published.
		hub.Publish("order-1", json.RawMessage(row(4)), tok(4))
		readUpdate(t, conn, "order-1", row(4), tok(4))
	})

	t.Run("ViaQuery", func(t *testing.T) {
		t.Parallel()
		hub, b := setup(t, &live.Config{
			Snapshot: func(ctx context.Context, id string) (json.RawMessage, events.Token, bool, error) {
				if id == "missing" {
					return nil, events.Token{}, false, nil
				}
				return json.RawMessage(`{"id":"` + id + `"}`), tok(1), true, nil
			},
		})
		conn := b.dial(t, "order-1", "missing")
		readType(t, conn, live.TypeSubscribed, "order-1")
		readType(t, conn, live.TypeSubscribed, "missing")
		m := readType(t, conn, live.TypeUpdated, "order-1")
		require.True(t, m.Snapshot)
		require.JSONEq(t, `{"id":"order-1"}`, string(m.Data))
		// Nothing for "missing" until it is published.
		hub.Publish("missing", json.RawMessage(row(2)), tok(2))
		readUpdate(t, conn, "missing", row(2), tok(2))
	})

	t.Run("Failure", func(t *testing.T) {
		t.Parallel()
		hub, b := setup(t, &live.Config{
			Snapshot: func(ctx context.Context, id string) (json.RawMessage, events.Token, bool, error) {
				if id == "panics" {
					panic("boom")
				}
				return nil, events.Token{}, false, fmt.Errorf("connection refused")
			},
		})
		conn := b.dial(t, "order-1")
		readType(t, conn, live.TypeSubscribed, "order-1")
		m := readType(t, conn, live.TypeError, "order-1")
		require.NotContains(t, m.Error, "refused", "internal errors stay in the log")
		hub.Publish("order-1", json.RawMessage(row(1)), tok(1))
		readUpdate(t, conn, "order-1", row(1), tok(1))

		send(t, conn, `{"action":"subscribe","entity":"panics"}`)
		readType(t, conn, live.TypeSubscribed, "panics")
		readType(t, conn, live.TypeError, "panics")
	})
}

func TestHub_InvalidPublishIsNotSent(t *testing.T) {
	t.Parallel()
	hub, b := setup(t, nil)
	conn := b.dial(t, "order-1")
	readType(t, conn, live.TypeSubscribed, "order-1")
	hub.Publish("order-1", json.RawMessage(`{not json`), tok(1))
	hub.Publish("order-1", json.RawMessage(row(2)), tok(2))
	readUpdate(t, conn, "order-1", row(2), tok(2))
}

func TestNewHub_Validates(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		cfg  live.Config
		want string
	}{
		{live.Config{SendBuffer: -1}, "Config.SendBuffer"},
		{live.Config{WriteTimeout: -time.Second}, "Config.WriteTimeout"},
		{live.Config{MaxClients: -1}, "Config.MaxClients"},
		{live.Config{MaxSubscriptionsPerClient: -1}, "Config.MaxSubscriptionsPerClient"},
		{live.Config{PingInterval: -time.Second}, "Config.PingInterval"},
		{live.Config{SnapshotTimeout: -time.Second}, "Config.SnapshotTimeout"},
		{live.Config{AllowedOrigins: []string{"[bad"}}, "Config.AllowedOrigins[0]"},
		{live.Config{AllowedOrigins: []string{""}}, "Config.AllowedOrigins[0]"},
	} {
		_, err := live.NewHub(&tt.cfg)
		require.ErrorContains(t, err, tt.want)
	}
	hub, err := live.NewHub(nil)
	require.NoError(t, err)
	hub.Close()
}

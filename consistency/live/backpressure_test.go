package live_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/live"
	"github.com/converge-es/converge/events"
)

// published is how many updates the back-pressure tests publish while the
// replies are held up. Without request back-pressure, 3 more messages than
// the replies the worker is sure to queue overflow the shared queue
// before the snapshot call the tests wait for.
const published = 3

// TestHub_BurstOfSubscribesIsSlowedNotDropped: a client that sends
// MaxSubscriptionsPerClient subscribes in one burst, as the order page does
// on every reconnect, while the replies cannot be written yet (the writer
// is held, as over a slow link) is not dropped as too slow: its requests
// are read as room for their replies frees. Once the replies flow it gets
// every acknowledgement and snapshot in order, the updates published
// meanwhile, and stays connected.
func TestHub_BurstOfSubscribesIsSlowedNotDropped(t *testing.T) {
	t.Parallel()
	const n = live.DefaultMaxSubscriptionsPerClient
	entities := entityIDs(n)
	// Replies have DefaultSendBuffer slots: the worker surely gets to the
	// snapshot of subscribe number DefaultSendBuffer/2.
	snapshot, second, reached := countedSnapshots(live.DefaultSendBuffer / 2)
	gate := make(chan struct{})
	hub, b := setupWithServer(t, &live.Config{Snapshot: snapshot},
		func(s *httptest.Server) { s.Listener = &gatedListener{Listener: s.Listener, gate: gate} })
	t.Cleanup(func() { openGate(gate) })
	conn := b.dial(t)

	for _, e := range entities {
		send(t, conn, `{"action":"subscribe","entity":"`+e+`"}`)
	}
	publishWhileHeld(t, hub, second, reached, entities[0])
	openGate(gate)

	got := readAll(t, conn, 2*n+published)
	var want []live.Message
	for _, e := range entities {
		want = append(want, live.Message{Type: live.TypeSubscribed, Entity: e}, snapshotOf(e))
	}
	requireStream(t, want, got, entities[0])
	requireStillServed(t, hub, conn, entities[n-1], n)
}

// TestHub_URLWithMaxSubscriptionsIsNotDropped: a client naming
// MaxSubscriptionsPerClient entities in its URL, whose acknowledgements and
// snapshots cannot be written yet, is not dropped as too slow: the
// snapshots wait for room. It then gets every acknowledgement, every
// snapshot and the updates published meanwhile, and stays connected.
func TestHub_URLWithMaxSubscriptionsIsNotDropped(t *testing.T) {
	t.Parallel()
	const n = live.DefaultMaxSubscriptionsPerClient
	entities := entityIDs(n)
	// Replies have DefaultSendBuffer slots besides one per acknowledgement:
	// the worker surely gets to snapshot number DefaultSendBuffer+1.
	snapshot, second, reached := countedSnapshots(live.DefaultSendBuffer + 1)
	gate := make(chan struct{})
	hub, b := setupWithServer(t, &live.Config{Snapshot: snapshot},
		func(s *httptest.Server) { s.Listener = &gatedListener{Listener: s.Listener, gate: gate} })
	t.Cleanup(func() { openGate(gate) })
	conn := b.dial(t, entities...)

	publishWhileHeld(t, hub, second, reached, entities[0])
	openGate(gate)

	got := readAll(t, conn, 2*n+published)
	var want []live.Message
	for _, e := range entities {
		want = append(want, live.Message{Type: live.TypeSubscribed, Entity: e})
	}
	for _, e := range entities {
		want = append(want, snapshotOf(e))
	}
	requireStream(t, want, got, entities[0])
	requireStillServed(t, hub, conn, entities[n-1], n)
}

// TestHub_ReaderWaitingForRoomHoldsNeitherTheHubNorClose: while a
// connection's worker waits for room for its replies (its writer held, as
// for a peer that stopped reading), the Hub serves other clients, and
// Close ends the connection and returns within about WriteTimeout, with
// every goroutine gone (TestMain checks for leaks).
func TestHub_ReaderWaitingForRoomHoldsNeitherTheHubNorClose(t *testing.T) {
	t.Parallel()
	const writeTimeout = time.Second
	entities := entityIDs(live.DefaultMaxSubscriptionsPerClient)
	snapshot, _, reached := countedSnapshots(live.DefaultSendBuffer / 2)
	gate := make(chan struct{})
	hub, b := setupWithServer(t, &live.Config{Snapshot: snapshot, WriteTimeout: writeTimeout},
		func(s *httptest.Server) { s.Listener = &gatedListener{Listener: s.Listener, gate: gate} })
	t.Cleanup(func() { openGate(gate) })
	held := b.dial(t) // the gated connection: never released
	for _, e := range entities {
		send(t, held, `{"action":"subscribe","entity":"`+e+`"}`)
	}
	await(t, reached, "the snapshot calls the worker has room for")

	other := b.dial(t) // accepted after the first: not gated
	send(t, other, `{"action":"subscribe","entity":"order-x"}`)
	readType(t, other, live.TypeSubscribed, "order-x")
	readType(t, other, live.TypeUpdated, "order-x") // its snapshot
	hub.Publish("order-x", json.RawMessage(row(2)), tok(2))
	readUpdate(t, other, "order-x", row(2), tok(2))
	require.Equal(t, 2, hub.Stats().Clients, "the held client was cut off before the other was served")

	start := time.Now()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		hub.Close()
	}()
	await(t, closed, "Close")
	require.Less(t, time.Since(start), 4*writeTimeout, "Close waited past WriteTimeout (%s)", writeTimeout)
	require.Equal(t, websocket.StatusGoingAway, readClose(t, other).Code)
	require.Zero(t, hub.Stats().Clients)
}

// entityIDs returns n distinct entity ids, in order.
func entityIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("order-%03d", i)
	}
	return ids
}

// countedSnapshots returns a snapshot function that finds every entity
// with a row naming it at tok(1), and the channels its calls close: second
// on the second call (the first subscription is handed over by then),
// reached on the calls-th.
func countedSnapshots(calls int64) (snapshot live.SnapshotFunc, second, reached <-chan struct{}) {
	var n atomic.Int64
	secondCh, reachedCh := make(chan struct{}), make(chan struct{})
	return func(_ context.Context, entity string) (json.RawMessage, events.Token, bool, error) {
		switch n.Add(1) {
		case 2:
			close(secondCh)
		case calls:
			close(reachedCh)
		}
		return snapshotRow(entity), tok(1), true, nil
	}, secondCh, reachedCh
}

func snapshotRow(entity string) json.RawMessage {
	return json.RawMessage(`{"id":"` + entity + `"}`)
}

func snapshotOf(entity string) live.Message {
	return live.Message{Type: live.TypeUpdated, Entity: entity, Data: snapshotRow(entity), Position: tok(1).String(), Snapshot: true}
}

// publishWhileHeld publishes updates of entity, the first subscribed,
// once its snapshot is handed over, then waits for the snapshot calls the
// worker must get to.
func publishWhileHeld(t *testing.T, hub *live.Hub, second, reached <-chan struct{}, entity string) {
	t.Helper()
	await(t, second, "the second snapshot call")
	for i := range published {
		hub.Publish(entity, json.RawMessage(row(2+i)), tok(2+i))
	}
	await(t, reached, "the snapshot calls the worker has room for")
	require.Zero(t, hub.Stats().Dropped, "the client was dropped while its replies were held")
}

// readAll reads n messages.
func readAll(t *testing.T, conn *websocket.Conn, n int) []live.Message {
	t.Helper()
	got := make([]live.Message, n)
	for i := range got {
		got[i] = read(t, conn)
	}
	return got
}

// requireStream checks got is want with the published updates of entity
// in order somewhere after its snapshot.
func requireStream(t *testing.T, want, got []live.Message, entity string) {
	t.Helper()
	var replies, updates []live.Message
	snapshotSeen := false
	for _, m := range got {
		if m.Type == live.TypeUpdated && !m.Snapshot {
			require.True(t, snapshotSeen, "update %+v before the snapshot of %s", m, entity)
			updates = append(updates, m)
			continue
		}
		snapshotSeen = snapshotSeen || (m.Snapshot && m.Entity == entity)
		replies = append(replies, m)
	}
	require.Len(t, replies, len(want))
	for i := range want {
		require.Equal(t, want[i].Type, replies[i].Type, "message %d: %+v", i, replies[i])
		require.Equal(t, want[i].Entity, replies[i].Entity, "message %d: %+v", i, replies[i])
		require.Equal(t, want[i].Snapshot, replies[i].Snapshot, "message %d: %+v", i, replies[i])
		require.Equal(t, want[i].Position, replies[i].Position, "message %d: %+v", i, replies[i])
		if want[i].Data != nil {
			require.JSONEq(t, string(want[i].Data), string(replies[i].Data), "message %d", i)
		}
	}
	require.Len(t, updates, published)
	for i, m := range updates {
		require.Equal(t, entity, m.Entity)
		require.JSONEq(t, row(2+i), string(m.Data))
		require.Equal(t, tok(2+i).String(), m.Position)
	}
}

// requireStillServed checks the client is connected with n subscriptions
// and still gets what is published for entity.
func requireStillServed(t *testing.T, hub *live.Hub, conn *websocket.Conn, entity string, n int) {
	t.Helper()
	st := hub.Stats()
	require.Zero(t, st.Dropped)
	require.Equal(t, 1, st.Clients)
	require.Equal(t, n, st.Subscriptions)
	hub.Publish(entity, json.RawMessage(row(99)), tok(99))
	readUpdate(t, conn, entity, row(99), tok(99))
}

// gatedListener holds every write of the first connection it accepts,
// after the handshake response, until gate is closed: the server's replies
// are queued as fast as it makes them but none is written, as when the
// link is slower than the server.
type gatedListener struct {
	net.Listener
	gate     <-chan struct{}
	accepted atomic.Bool
}

func (l *gatedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil || l.accepted.Swap(true) {
		return c, err
	}
	return &gatedConn{Conn: c, gate: l.gate, closed: make(chan struct{})}, nil
}

type gatedConn struct {
	net.Conn
	gate      <-chan struct{}
	closeOnce sync.Once
	closed    chan struct{}
}

func (c *gatedConn) Write(b []byte) (int, error) {
	if !bytes.HasPrefix(b, []byte("HTTP/")) {
		select {
		case <-c.gate:
		case <-c.closed:
			return 0, net.ErrClosed
		}
	}
	return c.Conn.Write(b)
}

// Close ends a held write, as closing a socket ends a blocked one.
func (c *gatedConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// openGate releases a gatedListener's connection; it may be called again.
func openGate(gate chan struct{}) {
	select {
	case <-gate:
	default:
		close(gate)
	}
}

package live_test

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/live"
	"github.com/converge-es/converge/events"
)

// Ping settings of the tests below: a pong has WriteTimeout to come back,
// ample on loopback even under a race run, and a client the Hub cuts off
// shows it within about PingInterval+WriteTimeout.
const (
	pingEvery   = 50 * time.Millisecond
	pongTimeout = time.Second
)

// newPings returns the channel dialCountingPings signals pings on.
func newPings() chan struct{} { return make(chan struct{}, 1024) }

// dialCountingPings connects like testBundle.dial, with every ping the
// client answers (while it reads) signalled on pings.
func (b *testBundle) dialCountingPings(t *testing.T, pings chan<- struct{}, entities ...string) *websocket.Conn {
	t.Helper()
	return b.dialWith(t, &websocket.DialOptions{
		HTTPClient: b.server.Client(),
		OnPingReceived: func(context.Context, []byte) bool {
			select {
			case pings <- struct{}{}:
			default:
			}
			return true
		},
	}, entities...)
}

// pingGatedSnapshot returns a snapshot function that, for the entities in
// gated, returns only once the client has received one more ping (or its
// context ends). The pinger sends a ping only once the previous one's pong
// came back, so a snapshot that returns after the client's second ping
// proves the Hub took in the first pong while that snapshot was being read.
func pingGatedSnapshot(pings <-chan struct{}, gated ...string) live.SnapshotFunc {
	wait := make(map[string]bool, len(gated))
	for _, e := range gated {
		wait[e] = true
	}
	return func(ctx context.Context, e string) (json.RawMessage, events.Token, bool, error) {
		if wait[e] {
			select {
			case <-pings:
			case <-ctx.Done():
				return nil, events.Token{}, false, ctx.Err()
			}
		}
		return snapshotRow(e), tok(1), true, nil
	}
}

// TestHub_PingsAreAnsweredWhileURLSnapshotsAreRead checks the package
// doc's promise that only clients that vanish are found by pings (Slow
// clients): a client that reads everything is not cut off while the Hub
// reads the snapshots of the entities in its URL one after the other, each
// slower than a ping round (each returns only at the client's next ping,
// which the Hub sends only once the last pong came back).
func TestHub_PingsAreAnsweredWhileURLSnapshotsAreRead(t *testing.T) {
	t.Parallel()
	ents := []string{"e1", "e2", "e3", "e4"}
	pings := newPings()
	hub, b := setup(t, &live.Config{
		PingInterval:    pingEvery,
		WriteTimeout:    pongTimeout,
		SnapshotTimeout: ioTimeout,
		Snapshot:        pingGatedSnapshot(pings, ents...),
	})
	conn := b.dialCountingPings(t, pings, ents...)
	for _, e := range ents {
		readType(t, conn, live.TypeSubscribed, e)
	}
	for _, e := range ents { // read promptly: every ping is answered
		m := read(t, conn)
		require.Equal(t, snapshotOf(e), m, "stats %+v", hub.Stats())
	}
	requireStillServed(t, hub, conn, ents[0], len(ents))
}

// TestHub_PingsAreAnsweredDuringABurstOfSubscribes checks the package
// doc's promise that "a page may resubscribe to all its entities in one
// burst on reconnect" (Slow clients) for the pings: the requests of the
// burst are read while they are handled, so the pong to a ping sent
// meanwhile, which follows the whole burst on the wire, is taken in before
// the last request's snapshot returns (at the client's second ping).
func TestHub_PingsAreAnsweredDuringABurstOfSubscribes(t *testing.T) {
	t.Parallel()
	const n = 40
	ents := make([]string, n)
	for i := range ents {
		ents[i] = "e" + strconv.Itoa(i)
	}
	pings := newPings()
	hub, b := setup(t, &live.Config{
		PingInterval:    pingEvery,
		WriteTimeout:    pongTimeout,
		SnapshotTimeout: ioTimeout,
		Snapshot:        pingGatedSnapshot(pings, ents[0], ents[n-1]),
	})
	conn := b.dialCountingPings(t, pings)
	for _, e := range ents { // the burst, all sent before any pong
		send(t, conn, `{"action":"subscribe","entity":"`+e+`"}`)
	}
	for _, e := range ents { // then everything is read promptly
		readType(t, conn, live.TypeSubscribed, e)
		require.Equal(t, snapshotOf(e), read(t, conn), "stats %+v", hub.Stats())
	}
	requireStillServed(t, hub, conn, ents[n-1], n)
}

// TestHub_HeldBackRequestsDoNotFailPings checks, for a client sending more
// requests than are read ahead of the one being handled
// (MaxSubscriptionsPerClient), the promise that it "is slowed instead"
// of dropped (Slow clients): while its requests are held back the Hub
// does not read the connection, so a pong that comes meanwhile is not
// taken in, and the ping it answers does not count against the client.
func TestHub_HeldBackRequestsDoNotFailPings(t *testing.T) {
	t.Parallel()
	const extra = 6 // more than MaxSubscriptionsPerClient (2) read ahead
	pings := newPings()
	first := pingGatedSnapshot(pings, "order-1")
	hub, b := setup(t, &live.Config{
		MaxSubscriptionsPerClient: 2,
		PingInterval:              pingEvery,
		WriteTimeout:              pongTimeout,
		SnapshotTimeout:           ioTimeout,
		// The snapshot returns at the client's second ping: the first one's
		// pong comes after the held-back requests, unread until then.
		Snapshot: func(ctx context.Context, e string) (json.RawMessage, events.Token, bool, error) {
			if _, _, _, err := first(ctx, e); err != nil {
				return nil, events.Token{}, false, err
			}
			return first(ctx, e)
		},
	})
	conn := b.dialCountingPings(t, pings)
	for range 1 + extra { // subscribing again is acknowledged again
		send(t, conn, `{"action":"subscribe","entity":"order-1"}`)
	}
	readType(t, conn, live.TypeSubscribed, "order-1")
	require.Equal(t, snapshotOf("order-1"), read(t, conn), "stats %+v", hub.Stats())
	for range extra {
		readType(t, conn, live.TypeSubscribed, "order-1")
	}
	requireStillServed(t, hub, conn, "order-1", 1)
}

package live_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/live"
	"github.com/converge-es/converge/events"
)

// await receives from ch or fails after ioTimeout.
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(ioTimeout):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// TestHub_SnapshotTimeoutCutsABlockedSnapshot: a Snapshot that would
// block until its context ends is cut by Config.SnapshotTimeout (not the
// 2s default): the client gets the error message for the entity, then the
// update published while the snapshot was being read, then later updates.
func TestHub_SnapshotTimeoutCutsABlockedSnapshot(t *testing.T) {
	t.Parallel()
	const timeout = 150 * time.Millisecond
	type ended struct {
		err  error
		took time.Duration
	}
	called, done := make(chan struct{}, 1), make(chan ended, 1)
	hub, b := setup(t, &live.Config{
		SnapshotTimeout: timeout,
		Snapshot: func(ctx context.Context, _ string) (json.RawMessage, events.Token, bool, error) {
			start := time.Now()
			called <- struct{}{}
			<-ctx.Done() // a read stuck behind a lock
			done <- ended{ctx.Err(), time.Since(start)}
			return nil, events.Token{}, false, ctx.Err()
		},
	})
	conn := b.dial(t)
	send(t, conn, `{"action":"subscribe","entity":"order-1"}`)
	readType(t, conn, live.TypeSubscribed, "order-1")
	await(t, called, "the snapshot call")
	hub.Publish("order-1", json.RawMessage(row(3)), tok(3)) // buffered meanwhile

	m := readType(t, conn, live.TypeError, "order-1")
	require.Equal(t, "could not read the current state; later updates will follow", m.Error)
	e := await(t, done, "the snapshot's end")
	require.ErrorIs(t, e.err, context.DeadlineExceeded, "the snapshot's context ran out")
	require.GreaterOrEqual(t, e.took, timeout-20*time.Millisecond, "cut before SnapshotTimeout")
	require.Less(t, e.took, live.DefaultSnapshotTimeout/2, "cut by SnapshotTimeout, not the default")

	readUpdate(t, conn, "order-1", row(3), tok(3))
	hub.Publish("order-1", json.RawMessage(row(4)), tok(4))
	readUpdate(t, conn, "order-1", row(4), tok(4))
}

// TestHub_UpdatesBufferedDuringASnapshotCountAgainstSendBuffer: while a
// subscription's snapshot is read, its updates are buffered up to
// SendBuffer; one more drops the client (closed as too slow) and counts
// it in Stats.Dropped, without waiting for the snapshot.
func TestHub_UpdatesBufferedDuringASnapshotCountAgainstSendBuffer(t *testing.T) {
	t.Parallel()
	const buffer = 3
	snapshot, called := blockedSnapshots(t, 1)
	hub, b := setup(t, &live.Config{SendBuffer: buffer, Snapshot: snapshot})
	conn := b.dial(t)
	send(t, conn, `{"action":"subscribe","entity":"order-1"}`)
	readType(t, conn, live.TypeSubscribed, "order-1")
	await(t, called, "the snapshot call")

	for i := range buffer {
		hub.Publish("order-1", json.RawMessage(row(2+i)), tok(2+i))
	}
	st := hub.Stats()
	require.Zero(t, st.Dropped, "%d buffered updates fit a SendBuffer of %d", buffer, buffer)
	require.Equal(t, 1, st.Clients)

	hub.Publish("order-1", json.RawMessage(row(2+buffer)), tok(2+buffer))
	st = hub.Stats()
	require.EqualValues(t, 1, st.Dropped, "one update over SendBuffer drops the client")
	require.Zero(t, st.Clients)
	require.Zero(t, st.Subscriptions)

	ce := readClose(t, conn)
	require.Equal(t, websocket.StatusPolicyViolation, ce.Code)
	require.Equal(t, "too slow: send queue full", ce.Reason)
}

// TestHub_CloseCutsOffAClientThatNeverReads: Close waits for a client to
// acknowledge its close frame for WriteTimeout, then cuts it off: with a
// client that never reads, it returns after about WriteTimeout (not the
// 5s default, nor the WebSocket library's own 5s handshake wait).
func TestHub_CloseCutsOffAClientThatNeverReads(t *testing.T) {
	t.Parallel()
	const writeTimeout = 200 * time.Millisecond
	hub, b := setup(t, &live.Config{WriteTimeout: writeTimeout})
	conn := b.dial(t, "order-1") // never read until Close has returned
	require.Equal(t, 1, hub.Stats().Clients)

	start := time.Now()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		hub.Close()
	}()
	select {
	case <-closed:
	case <-time.After(ioTimeout):
		t.Fatal("Close did not return")
	}
	took := time.Since(start)
	t.Logf("Close took %s", took)
	require.GreaterOrEqual(t, took, writeTimeout/2, "Close gave the client time to acknowledge")
	require.Less(t, took, 2*time.Second, "Close waited past WriteTimeout (%s)", writeTimeout)
	require.Zero(t, hub.Stats().Clients)

	// What the client gets once it reads: the close frame Close sent
	// (after its subscription's acknowledgement, when the writer sent that
	// before Close stopped it: a stopped client is sent nothing more).
	require.Equal(t, websocket.StatusGoingAway, readClose(t, conn).Code)
}

// TestHub_CloseDuringASnapshotCutsOffWithinWriteTimeout: Close while a
// URL subscription's snapshot is being read (the connection's worker is
// busy with it) and the client never reads still
// returns within about WriteTimeout: the client does not acknowledge its
// close frame, so it is cut off.
func TestHub_CloseDuringASnapshotCutsOffWithinWriteTimeout(t *testing.T) {
	t.Parallel()
	const writeTimeout = 200 * time.Millisecond
	called := make(chan struct{}, 1)
	hub, b := setup(t, &live.Config{
		WriteTimeout: writeTimeout,
		Snapshot: func(ctx context.Context, _ string) (json.RawMessage, events.Token, bool, error) {
			called <- struct{}{}
			<-ctx.Done() // a read stuck behind a lock, as at a database's shutdown
			return nil, events.Token{}, false, ctx.Err()
		},
	})
	b.dial(t, "order-1") // never read
	await(t, called, "the snapshot call")

	start := time.Now()
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		hub.Close()
	}()
	select {
	case <-closed:
	case <-time.After(ioTimeout):
		t.Fatal("Close did not return")
	}
	took := time.Since(start)
	t.Logf("Close took %s", took)
	require.Less(t, took, 2*time.Second, "Close waited past WriteTimeout (%s)", writeTimeout)
	require.Zero(t, hub.Stats().Clients)
}

// TestHub_BufferedUpdatesOfAllPendingSubscriptionsShareSendBuffer: the
// updates buffered for a client's subscriptions waiting for their
// snapshots are held to SendBuffer together, not each: a client naming
// many entities in its URL, whose snapshots load one after the other,
// cannot hold SendBuffer updates per entity.
func TestHub_BufferedUpdatesOfAllPendingSubscriptionsShareSendBuffer(t *testing.T) {
	t.Parallel()
	const buffer = 4
	snapshot, called := blockedSnapshots(t, 2)
	hub, b := setup(t, &live.Config{SendBuffer: buffer, Snapshot: snapshot})
	b.dial(t, "order-1", "order-2") // both pending; order-1's snapshot blocks
	await(t, called, "the first snapshot call")

	for i := range buffer - 1 {
		hub.Publish("order-1", json.RawMessage(row(2+i)), tok(2+i))
	}
	hub.Publish("order-2", json.RawMessage(row(2)), tok(2))
	require.Zero(t, hub.Stats().Dropped, "%d buffered updates in all fit a SendBuffer of %d", buffer, buffer)
	hub.Publish("order-2", json.RawMessage(row(3)), tok(3))
	require.EqualValues(t, 1, hub.Stats().Dropped, "one more, on any of its subscriptions, drops the client")
}

// blockedSnapshots returns a snapshot function whose calls block until the
// test ends (or their context does), and the channel each call signals;
// up to calls signals are buffered.
func blockedSnapshots(t *testing.T, calls int) (live.SnapshotFunc, <-chan struct{}) {
	t.Helper()
	called, release := make(chan struct{}, calls), make(chan struct{})
	t.Cleanup(func() { close(release) })
	return func(ctx context.Context, _ string) (json.RawMessage, events.Token, bool, error) {
		called <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return json.RawMessage(row(1)), tok(1), true, nil
	}, called
}

// TestHub_SnapshotTimeoutAbandonsASnapshotThatIgnoresItsContext: a
// Snapshot that does not heed its context is still bounded by
// Config.SnapshotTimeout: the client gets the error message for the
// entity and the later updates, and Close returns, while the call is
// still running (it is left to finish on its own).
func TestHub_SnapshotTimeoutAbandonsASnapshotThatIgnoresItsContext(t *testing.T) {
	t.Parallel()
	called, release := make(chan struct{}, 1), make(chan struct{})
	returned := make(chan struct{})
	hub, b := setup(t, &live.Config{
		SnapshotTimeout: 100 * time.Millisecond,
		Snapshot: func(context.Context, string) (json.RawMessage, events.Token, bool, error) {
			defer close(returned)
			called <- struct{}{}
			<-release // a call that ignores its context
			return json.RawMessage(row(1)), tok(1), true, nil
		},
	})
	// Released last, so the abandoned call ends before the leak check.
	t.Cleanup(func() {
		close(release)
		<-returned
	})
	conn := b.dial(t)
	send(t, conn, `{"action":"subscribe","entity":"order-1"}`)
	readType(t, conn, live.TypeSubscribed, "order-1")
	await(t, called, "the snapshot call")
	m := readType(t, conn, live.TypeError, "order-1")
	require.Equal(t, "could not read the current state; later updates will follow", m.Error)
	hub.Publish("order-1", json.RawMessage(row(2)), tok(2))
	readUpdate(t, conn, "order-1", row(2), tok(2))

	require.NoError(t, conn.Close(websocket.StatusNormalClosure, ""))
	closed := make(chan struct{})
	go func() {
		hub.Close()
		close(closed)
	}()
	await(t, closed, "Close, with the snapshot call still running")
	select {
	case <-returned:
		t.Fatal("the snapshot call returned before its release")
	default:
	}
}

// TestHub_ShutdownCutsOffAtItsContextsEnd: Shutdown gives a client that
// never reads until its context ends, not the (longer) WriteTimeout, then
// cuts it off and says so; with clients that acknowledge, it returns nil.
func TestHub_ShutdownCutsOffAtItsContextsEnd(t *testing.T) {
	t.Parallel()
	hub, b := setup(t, &live.Config{WriteTimeout: time.Minute})
	b.dial(t, "order-1") // never read
	require.Equal(t, 1, hub.Stats().Clients)

	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- hub.Shutdown(ctx) }()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.ErrorContains(t, err, "cut off")
	case <-time.After(ioTimeout):
		t.Fatal("Shutdown waited past its context's end (for WriteTimeout, a minute)")
	}
	require.Zero(t, hub.Stats().Clients)
	require.NoError(t, hub.Shutdown(t.Context()), "again: nothing left to cut off")

	hub2, b2 := setup(t, nil)
	conn := b2.dial(t, "order-1")
	read := make(chan error, 1)
	go func() {
		for {
			if _, _, err := conn.Read(t.Context()); err != nil {
				read <- err
				return
			}
		}
	}()
	require.NoError(t, hub2.Shutdown(t.Context()), "a client that acknowledges is not cut off")
	require.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(<-read))
}

// TestHub_ShutdownWithAnEndedContextAndNoClientCutsNothing: Shutdown with
// a context that has already ended (a deferred call with the signal
// context that ended the program) of a hub with no client returns nil:
// nothing was cut off. It used to say otherwise now and then, as the
// context's callback raced the end of the wait.
func TestHub_ShutdownWithAnEndedContextAndNoClientCutsNothing(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for i := range 5000 {
		hub, err := live.NewHub(nil)
		require.NoError(t, err)
		require.NoError(t, hub.Shutdown(ctx), "shutdown %d", i)
	}
}

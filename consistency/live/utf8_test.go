package live_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/live"
	"github.com/converge-es/converge/events"
)

// latin1 is a JSON row that is not UTF-8: "café" in Latin-1.
var latin1 = json.RawMessage("{\"name\":\"caf\xe9\"}")

// logBuffer collects a Hub's log.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// readUTF8 returns the next message on conn, checking it is UTF-8 text,
// as a browser requires of a text message (it fails the connection on one
// that is not; the Go client does not check).
func readUTF8(t *testing.T, conn *websocket.Conn) live.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), ioTimeout)
	defer cancel()
	typ, b, err := conn.Read(ctx)
	require.NoError(t, err)
	require.Equal(t, websocket.MessageText, typ)
	require.True(t, utf8.Valid(b), "text message is not UTF-8: %q", b)
	var m live.Message
	require.NoError(t, json.Unmarshal(b, &m), "message %s", b)
	return m
}

// TestHub_NonUTF8PublishIsNotSent checks Publish's promise "Invalid data is
// logged and not sent" for data that is valid JSON but not UTF-8, which in
// a WebSocket text message would make browsers fail the connection: the
// client gets the next valid update instead, and the log says why.
func TestHub_NonUTF8PublishIsNotSent(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	hub, b := setup(t, &live.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	conn := b.dial(t, "order-1")
	readType(t, conn, live.TypeSubscribed, "order-1")
	hub.Publish("order-1", latin1, tok(1))
	hub.Publish("order-1", json.RawMessage(row(2)), tok(2))

	m := readUTF8(t, conn)
	require.Equal(t, tok(2).String(), m.Position, "message %+v", m)
	require.JSONEq(t, row(2), string(m.Data))
	require.Contains(t, logs.String(), "not valid UTF-8")
}

// TestHub_NonUTF8SnapshotIsAnError checks the promise of message.go's
// TypeError, that a snapshot the Hub could not read is reported with an
// error message and the connection stays open, for a Snapshot returning
// data that is not UTF-8: the client gets the error for the entity, not
// the data, then the later updates.
func TestHub_NonUTF8SnapshotIsAnError(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	hub, b := setup(t, &live.Config{
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Snapshot: func(context.Context, string) (json.RawMessage, events.Token, bool, error) {
			return latin1, tok(1), true, nil
		},
	})
	conn := b.dial(t, "order-1")
	readType(t, conn, live.TypeSubscribed, "order-1")
	m := readUTF8(t, conn)
	require.Equal(t, live.TypeError, m.Type, "message %+v", m)
	require.Equal(t, "order-1", m.Entity)
	require.Equal(t, "could not read the current state; later updates will follow", m.Error)
	require.Contains(t, logs.String(), "not valid JSON in UTF-8")

	hub.Publish("order-1", json.RawMessage(row(2)), tok(2))
	m = readUTF8(t, conn)
	require.Equal(t, live.TypeUpdated, m.Type, "message %+v", m)
	require.Equal(t, tok(2).String(), m.Position)
}

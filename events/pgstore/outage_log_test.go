package pgstore_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events/pgstore"
)

// warnCounter counts WARN records whose message contains a substring.
type warnCounter struct {
	substr string
	n      atomic.Int64
}

func (h *warnCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *warnCounter) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *warnCounter) WithGroup(string) slog.Handler                { return h }
func (h *warnCounter) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.substr) {
		h.n.Add(1)
	}
	return nil
}

// TestListenOutageLogsOnce points a store at a "database" that accepts
// connections and drops them at once, and counts the listener's attempts:
// many attempts, one WARN.
func TestListenOutageLogsOnce(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var attempts atomic.Int64
	tenAttempts := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
			if attempts.Add(1) >= 10 {
				once.Do(func() { close(tenAttempts) })
			}
		}
	})
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })

	pool, err := pgxpool.New(context.Background(), "postgres://postgres@"+ln.Addr().String()+"/test?connect_timeout=2")
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	logs := &warnCounter{substr: "listen connection"}
	st, err := pgstore.New(context.Background(), pool, &pgstore.Config{
		SkipSchemaCheck:      true,
		ListenReconnectDelay: time.Millisecond,
		Logger:               slog.New(logs),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })

	select {
	case <-tenAttempts:
	case <-time.After(15 * time.Second):
		t.Fatalf("the listener tried only %d times in 15s", attempts.Load())
	}
	require.False(t, st.PushHealthy())
	require.Equal(t, int64(1), logs.n.Load(), "one WARN for the outage, not one per attempt")
}

package main

import (
	"context"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
)

// TestServeStopIsBoundedByAPageThatNeverReads: a live page connection
// that never reads again (so never acknowledges the close) is cut off at
// --shutdown-timeout, not after the hub's 5 s write timeout, and the stop
// names it, not the steps that stopped at once after it (the order
// workflow and the store, whose share of the deadline it used to take).
func TestServeStopIsBoundedByAPageThatNeverReads(t *testing.T) {
	addr, stop := startServeStoppable(t, "serve", "--listen", "127.0.0.1:0", "--shutdown-timeout", "1s")
	t.Cleanup(func() { _ = stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, "ws://"+addr+"/live/orders?entity=o-1", nil)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	require.NoError(t, err)
	defer func() { _ = conn.CloseNow() }()

	start := time.Now()
	err = stop()
	took := time.Since(start)
	require.Error(t, err, "a page cut off at the deadline is a stop that did not complete")
	require.Contains(t, err.Error(), "the live connections did not stop within --shutdown-timeout 1s")
	for _, step := range []string{"the order workflow", "the database connections", "the lag history", "requests in flight"} {
		require.NotContains(t, err.Error(), step, "only the live connections held the stop up")
	}
	require.Less(t, took, 4*time.Second, "the hub's own 5 s write timeout, not --shutdown-timeout 1s, ended the stop")
}

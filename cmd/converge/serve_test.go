package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

func TestServeExposesLagAndMetrics(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	ctx := context.Background()
	store, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, DisableListen: true})
	require.NoError(t, err)
	defer store.Close()
	// A consumer two events behind.
	lease, err := store.Checkpoints().Acquire(ctx, "orders_view", "test", time.Minute)
	require.NoError(t, err)
	_, err = store.Append(ctx, "order-1", events.NoStream,
		events.Event{Data: events.Raw{Type: "t", Payload: []byte(`{}`)}},
		events.Event{Data: events.Raw{Type: "t", Payload: []byte(`{}`)}})
	require.NoError(t, err)
	_ = lease

	pr, pw := io.Pipe()
	root := newRootCmd()
	root.SetArgs([]string{"serve", "--database-url", db.URL, "--schema", db.Schema, "--listen", "127.0.0.1:0", "--interval", "50ms", "--sla", "1h"})
	root.SetOut(pw)
	root.SetErr(io.Discard)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(sctx); _ = pw.Close() }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()

	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err)
	addr := strings.TrimSpace(strings.TrimPrefix(line, "listening on "))
	go func() { _, _ = io.Copy(io.Discard, pr) }()

	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	// The first pass may not have run yet: wait for a report to appear.
	var reports []map[string]any
	require.Eventually(t, func() bool {
		code, body := get("/lag")
		require.Equal(t, http.StatusOK, code)
		require.NoError(t, json.Unmarshal([]byte(body), &reports))
		return len(reports) == 1
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, "orders_view", reports[0]["projection"])
	require.EqualValues(t, 2, reports[0]["behind_events"])

	code, body := get("/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `converge_projection_position_lag_events{projection="orders_view"} 2`)
	code, _ = get("/healthz")
	require.Equal(t, http.StatusOK, code, "behind, but within a one-hour SLA")
}

func TestServeRejectsBadFlags(t *testing.T) {
	t.Parallel()
	_, err := runCLI(t, "serve", "--listen", "nonsense")
	require.ErrorContains(t, err, "--listen")
	_, err = runCLI(t, "serve", "--sla", "0s")
	require.ErrorContains(t, err, "--sla")
}

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/examples/orders"
	"github.com/converge-es/converge/internal/pgtest"
)

func TestDemoRunsInMemory(t *testing.T) {
	t.Parallel()
	out, err := runCLI(t, "demo", "--orders", "20", "--customers", "4", "--lag", "10ms")
	require.NoError(t, err, out)
	require.Contains(t, out, "20/20 orders closed")
	require.Contains(t, out, "every saga reached a terminal state")
	require.Contains(t, out, "every read model equals a clean rebuild from the events")
	require.Contains(t, out, "money and stock match the confirmed orders")
}

// TestDemoSeedZeroIsSeedZero: `converge demo --seed 0` runs seed 0, as it
// says, not the default seed 1.
func TestDemoSeedZeroIsSeedZero(t *testing.T) {
	t.Parallel()
	out, err := runCLI(t, "demo", "--seed", "0", "--orders", "4", "--customers", "2", "--lag", "5ms")
	require.NoError(t, err, out)
	require.Contains(t, out, "(seed 0)")
}

// TestDemoRefusesPostgresOnlyFlagsInMemory: --keep and --schema mean
// something only to the PostgreSQL demo; in memory they are refused, not
// ignored, and nothing runs.
func TestDemoRefusesPostgresOnlyFlagsInMemory(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--keep"}, {"--schema", "mine"}, {"--keep=false"}} {
		out, err := runCLI(t, append([]string{"demo", "--orders", "2"}, args...)...)
		require.Error(t, err, "demo %v in memory", args)
		name := strings.SplitN(strings.TrimPrefix(args[0], "--"), "=", 2)[0]
		require.Contains(t, err.Error(), "--"+name+" applies to the PostgreSQL demo only")
		require.NotContains(t, out, "orders closed", "the demo ran")
	}
}

func TestDemoRefusesBadFlags(t *testing.T) {
	t.Parallel()
	_, err := runCLI(t, "demo", "--orders", "0")
	require.ErrorContains(t, err, "--orders 0")
}

// TestDemoOnPostgreSQLTwice: the demo runs again on the same database (a
// fresh schema per run) and drops its schema.
func TestDemoOnPostgreSQLTwice(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	prefix := "t_demo" + hex.EncodeToString(suffix)
	for range 2 {
		out, err := runCLI(t, "demo", "--database-url", url, "--schema", prefix, "--orders", "12", "--customers", "3", "--lag", "10ms")
		require.NoError(t, err, out)
		require.Contains(t, out, "every read model equals a clean rebuild from the events")
	}
	conn, err := pgx.Connect(context.Background(), url)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var left int
	require.NoError(t, conn.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_namespace WHERE nspname LIKE $1`, prefix+"_demo_%").Scan(&left))
	require.Zero(t, left, "the demo drops its schemas")
}

// TestDemoBoundsLag: --lag is at most maxDemoLag, refused above it with
// an error naming the flag and the maximum. 8×--lag overflowed for huge
// values (1000000h announced "lagging up to -2248191h…" and the stall
// never happened); at the maximum the announced stall is 8×, positive,
// and shorter than a customer's wait for its order, so the demo can
// still pass.
func TestDemoBoundsLag(t *testing.T) {
	t.Parallel()
	require.Less(t, 8*maxDemoLag, orders.DefaultDemoSettleTimeout, "the longest stall ends before a customer stops waiting")
	for _, lag := range []time.Duration{1_000_000 * time.Hour, maxDemoLag + time.Nanosecond, -time.Nanosecond} {
		out, err := runCLI(t, "demo", "--lag", lag.String(), "--orders", "1")
		require.Error(t, err, lag)
		require.True(t, strings.HasPrefix(err.Error(), "--lag "+lag.String()+": "), "%s: %v", lag, err)
		require.ErrorContains(t, err, "up to "+maxDemoLag.String(), lag)
		require.Empty(t, out, "refused before the demo starts")
	}

	// The run is stopped once it has announced itself: at the maximum,
	// one order may wait 2×--lag, which this test need not sit out.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := &announcement{seen: cancel}
	root := newRootCmd()
	root.SetArgs([]string{"demo", "--lag", maxDemoLag.String(), "--orders", "1"})
	root.SetOut(w)
	root.SetErr(w)
	_ = execute(ctx, root) // canceled: the announcement is what is checked
	require.ErrorIs(t, context.Cause(ctx), context.Canceled, "the demo announced itself within the deadline:\n%s", w.text())
	line, _, _ := strings.Cut(w.text(), "\n")
	require.Equal(t, "converge demo: 1 orders from 1 customers (seed 1), order_summary lagging up to "+(8*maxDemoLag).String(), line)
}

// announcement collects a demo's output and calls seen once the first
// line, the demo's announcement, is complete.
type announcement struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	seen func()
}

func (a *announcement) Write(p []byte) (int, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.buf.Write(p)
	if strings.Contains(a.buf.String(), "\n") {
		a.seen()
	}
	return len(p), nil
}

func (a *announcement) text() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.buf.String()
}

// TestDemoHasNoCustomersWithoutOrders: every simulated customer places at
// least one order, so --customers above --orders is refused, and without
// --customers fewer orders than the default lower it: the demo announced
// "5 orders from 100 customers" when 95 of them placed nothing.
func TestDemoHasNoCustomersWithoutOrders(t *testing.T) {
	t.Parallel()
	out, err := runCLI(t, "demo", "--customers", "100", "--orders", "5")
	require.EqualError(t, err, "--customers 100: use at most --orders (5): each customer places at least one order, so the others would never place any")
	require.Empty(t, out)

	require.Greater(t, orders.DefaultDemoCustomers, 3)
	out, err = runCLI(t, "demo", "--orders", "3", "--lag", "5ms")
	require.NoError(t, err, out)
	require.Contains(t, out, "converge demo: 3 orders from 3 customers (seed 1)")
	require.Contains(t, out, "3/3 orders closed")

	out, err = runCLI(t, "demo", "--orders", "3", "--customers", "3", "--lag", "5ms")
	require.NoError(t, err, out)
	require.Contains(t, out, "converge demo: 3 orders from 3 customers (seed 1)")
}

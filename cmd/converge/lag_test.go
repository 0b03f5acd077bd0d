package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

// lagBundle is a migrated schema with three events, a consumer "orders"
// that has processed the first and a consumer "search" that has processed
// all three.
type lagBundle struct {
	conn        []string // --database-url and --schema
	first, head events.Token
	schema      string
}

func setupLag(t *testing.T) lagBundle {
	t.Helper()
	ctx := t.Context()
	db := pgtest.New(t, nil)
	store, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, DisableListen: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })

	var tokens []events.Token
	for i := range 3 {
		res, err := store.Append(ctx, "order-1", events.Exactly(int64(i)),
			events.Event{Data: events.Raw{Type: "ticked", Payload: []byte(`{}`)}})
		require.NoError(t, err)
		tokens = append(tokens, res.Token)
	}
	cps := store.Checkpoints()
	for name, pos := range map[string]events.Token{"orders": tokens[0], "search": tokens[2]} {
		l, err := cps.Acquire(ctx, name, "runner-1", time.Hour)
		require.NoError(t, err)
		u, err := cps.Begin(ctx)
		require.NoError(t, err)
		require.NoError(t, u.Commit(u.Context(ctx), feed.Move{Lease: l, Position: pos}))
	}
	return lagBundle{
		conn:   []string{"--database-url", db.URL, "--schema", db.Schema},
		first:  tokens[0],
		head:   tokens[2],
		schema: db.Schema,
	}
}

// tableRows returns the table's data rows keyed by projection, each split
// into its columns (STATUS may hold two words).
func tableRows(t *testing.T, out string) map[string][]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	require.NotEmpty(t, lines)
	require.Equal(t, []string{"PROJECTION", "CHECKPOINT", "BEHIND", "TIME", "LAG", "HEARTBEAT", "SLA", "STATUS"}, strings.Fields(lines[0]))
	rows := map[string][]string{}
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "read horizon ") {
			// Other tests' transactions share the cluster's horizon.
			break
		}
		f := strings.Fields(l)
		rows[f[0]] = f
	}
	return rows
}

func TestLag(t *testing.T) {
	t.Parallel()
	b := setupLag(t)

	out, err := runCLI(t, append([]string{"lag", "--sla", "1h"}, b.conn...)...)
	require.NoError(t, err)
	rows := tableRows(t, out)
	require.Len(t, rows, 2, out)

	orders := rows["orders"]
	require.Equal(t, b.first.String(), orders[1])
	require.Equal(t, "2", orders[2], "orders is two events behind:\n%s", out)
	require.NotEqual(t, "0s", orders[3], "its oldest unprocessed event has been waiting")
	require.Equal(t, "1h0m0s", orders[5])
	require.Equal(t, "ok", orders[6])

	search := rows["search"]
	require.Equal(t, b.head.String(), search[1])
	require.Equal(t, []string{"0", "0s"}, search[2:4], "search is caught up")
	require.Equal(t, "ok", search[6])
}

func TestLagJSON(t *testing.T) {
	t.Parallel()
	b := setupLag(t)

	out, err := runCLI(t, append([]string{"lag", "--json", "--sla", "1h"}, b.conn...)...)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, out)

	var raw map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &raw))
	require.Equal(t, "orders", raw["projection"], "sorted by name")
	require.Equal(t, b.first.String(), raw["checkpoint"])
	require.Equal(t, b.head.String(), raw["head"])
	require.Equal(t, 2.0, raw["behind_events"])
	require.Equal(t, 3600.0, raw["sla_seconds"])
	require.Equal(t, false, raw["breached"])
	require.Equal(t, "runner-1", raw["owner"])
	for _, k := range []string{"time_lag_seconds", "heartbeat_age_seconds", "horizon_age_seconds", "at"} {
		require.Contains(t, raw, k)
	}
	require.Positive(t, raw["time_lag_seconds"])

	var search lag.Report
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &search))
	require.Equal(t, "search", search.Name)
	require.Equal(t, b.head, search.Checkpoint)
	require.Zero(t, search.PositionLag)
	require.Zero(t, search.TimeLag)
}

func TestLagNamedProjectionsAndFailOnBreach(t *testing.T) {
	t.Parallel()
	b := setupLag(t)

	// orders' SLA is 1ns, which it cannot meet.
	out, err := runCLI(t, append([]string{"lag", "orders=1ns", "search", "--sla", "1h", "--fail-on-breach"}, b.conn...)...)
	require.ErrorContains(t, err, "lag: projection orders breaches its SLA")
	var ec interface{ ExitCode() int }
	require.True(t, errors.As(err, &ec))
	require.Equal(t, 3, ec.ExitCode())

	rows := tableRows(t, out)
	require.Len(t, rows, 2, out)
	require.Equal(t, "BREACH", rows["orders"][6])
	require.Equal(t, "1ns", rows["orders"][5], out)
	require.Equal(t, "0", rows["search"][2])
	require.Equal(t, "1h0m0s", rows["search"][5])
	require.Equal(t, "ok", rows["search"][6])

	// Without --fail-on-breach a breach is reported, not an error.
	out, err = runCLI(t, append([]string{"lag", "orders=1ns"}, b.conn...)...)
	require.NoError(t, err)
	require.Equal(t, "BREACH", tableRows(t, out)["orders"][6])
}

func TestLagWatch(t *testing.T) {
	t.Parallel()
	b := setupLag(t)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	// Interrupt the command once it has printed its second table.
	out := &cancelAfter{want: 2, cancel: cancel}
	root := newRootCmd()
	root.SetArgs(append([]string{"lag", "--watch", "100ms"}, b.conn...))
	root.SetOut(out)
	root.SetErr(out)
	require.NoError(t, root.ExecuteContext(ctx), "an interrupted --watch ends cleanly")

	tables := strings.Split(out.String(), "\n\n")
	require.GreaterOrEqual(t, len(tables), 2, out.String())
	for _, tbl := range tables[:2] {
		require.Equal(t, "2", tableRows(t, tbl)["orders"][2])
	}
}

// cancelAfter is an output that cancels once `want` tables have been
// written to it.
type cancelAfter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	want   int
	cancel context.CancelFunc
}

func (w *cancelAfter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	sc := bufio.NewScanner(bytes.NewReader(w.buf.Bytes()))
	tables := 0
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "search ") {
			tables++ // the last row of a table
		}
	}
	if tables >= w.want {
		w.cancel()
	}
	return n, err
}

func (w *cancelAfter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestLagRejectsBadOptions(t *testing.T) {
	t.Parallel()
	// Options are checked before connecting: this URL is never dialled.
	conn := []string{"--database-url", "postgres://nobody@127.0.0.1:1/none"}
	for want, args := range map[string][]string{
		"--sla 0s: use a positive duration":              {"--sla", "0"},
		"--watch -1s: use an interval of at least 100ms": {"--watch", "-1s"},
		"--watch 1ns: use an interval of at least 100ms": {"--watch", "1ns"},
		"--fail-on-breach needs a single":                {"--watch", "1s", "--fail-on-breach"},
		`projection "=2s": the name is empty`:            {"=2s"},
		`projection "orders": SLA "soon"`:                {"orders=soon"},
		`projection "orders" is named twice`:             {"orders", "orders=3s"},
		`--schema: schema "Bad-Name"`:                    {"--schema", "Bad-Name"},
	} {
		_, err := runCLI(t, append(append([]string{"lag"}, args...), conn...)...)
		require.ErrorContains(t, err, want)
	}
}

// TestLagNeedsMigratedSchema: every command that reads the store says,
// once, to run migrate on an unmigrated schema.
func TestLagNeedsMigratedSchema(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	for _, args := range [][]string{{"lag"}, {"projections", "status"}, {"dead-letters", "list"}, {"sagas", "list"}} {
		_, err := runCLI(t, append(args, "--database-url", db.URL, "--schema", db.Schema)...)
		require.ErrorContains(t, err, "converge migrate --schema "+db.Schema+"`", args)
		require.Equal(t, 1, strings.Count(err.Error(), "converge migrate"), "%v says it once: %v", args, err)
	}
}

func TestLagWithoutConsumers(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	out, err := runCLI(t, "lag", "--database-url", db.URL, "--schema", db.Schema)
	require.NoError(t, err)
	require.Contains(t, out, "no projection has a checkpoint in schema")
}

func TestLagRejectsUnknownProjection(t *testing.T) {
	t.Parallel()
	b := setupLag(t)

	// A typo is an error naming the known projections, not an SLA breach
	// (exit status 3) nor a row "behind by everything".
	for _, args := range [][]string{
		{"lag", "ordrs"},
		{"lag", "orders", "ordrs=2s", "--fail-on-breach"},
		{"lag", "ordrs", "--watch", "1s"},
	} {
		out, err := runCLI(t, append(args, b.conn...)...)
		require.EqualError(t, err, `lag: no projection named "ordrs" in schema "`+b.schema+`"; known: orders, search`, args)
		var ec interface{ ExitCode() int }
		require.False(t, errors.As(err, &ec), "not a breach")
		require.Empty(t, out)
	}
}

func TestLagRejectsNamesInAnEmptySchema(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	_, err := runCLI(t, "lag", "orders", "--database-url", db.URL, "--schema", db.Schema)
	require.EqualError(t, err, `lag: no projection named "orders": schema "`+db.Schema+`" has no projections yet (wrong --schema, or has no projection runner started?)`)
}

// TestLagReportsAPartitionedProcessorOnce: a processor that ran unsplit
// and then in three partitions is one line, under its name, at its
// current partitions (caught up); the checkpoints its first run left
// behind are not listed, and naming it finds it.
func TestLagReportsAPartitionedProcessorOnce(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t, nil)
	store, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	conn := []string{"--database-url", db.URL, "--schema", db.Schema}

	var head events.Token
	for _, n := range []int{1, 3} {
		for i := range 4 {
			res, err := store.Append(ctx, "order-"+strings.Repeat("x", n+i), events.AnyVersion,
				events.Event{Data: events.Raw{Type: "ticked", Payload: []byte(`{}`)}})
			require.NoError(t, err)
			head = res.Token
		}
		p, err := feed.NewProcessor(store, &feed.ProcessorConfig{Name: "split", Partitions: n},
			func(context.Context, events.Envelope) error { return nil })
		require.NoError(t, err)
		runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan error, 1)
		go func() { done <- p.Run(runCtx) }()
		require.Eventually(t, func() bool {
			pos, err := p.Position(ctx)
			return err == nil && !pos.Before(head)
		}, 30*time.Second, 5*time.Millisecond)
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			require.NoError(t, err, "Run ends by its context")
		}
		require.NoError(t, p.Close())
	}

	out, err := runCLI(t, append([]string{"lag", "--sla", "1h"}, conn...)...)
	require.NoError(t, err)
	rows := tableRows(t, out)
	require.Len(t, rows, 1, out)
	require.Equal(t, head.String(), rows["split"][1], out)
	require.Equal(t, "0", rows["split"][2], "caught up:\n%s", out)

	out, err = runCLI(t, append([]string{"lag", "split", "--fail-on-breach"}, conn...)...)
	require.NoError(t, err, out)
	require.Len(t, tableRows(t, out), 1, out)
}

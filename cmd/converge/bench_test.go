package main

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/pgtest"
)

// benchSchemas lists the schemas left behind by bench runs with prefix.
func benchSchemas(t *testing.T, db *pgtest.DB, prefix string) []string {
	t.Helper()
	rows, err := db.Pool.Query(t.Context(), "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1) ORDER BY 1", prefix+benchSchemaInfix)
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return names
}

// splitBenchOutput returns the JSON lines of a bench run, decoded, and the
// text after them.
func splitBenchOutput(t *testing.T, out string) (lines []map[string]any, rest string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(out))
	var after []string
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "{") && after == nil {
			var m map[string]any
			require.NoError(t, json.Unmarshal([]byte(l), &m), l)
			lines = append(lines, m)
			continue
		}
		after = append(after, l)
	}
	require.NoError(t, sc.Err())
	return lines, strings.Join(after, "\n")
}

func TestBenchAppend(t *testing.T) {
	t.Parallel()
	// The bench's own schema is made under db.Schema as a prefix, and
	// db.Schema itself stays untouched.
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	out, err := runCLI(t, "bench", "--database-url", db.URL, "--schema", db.Schema,
		"--scenario", "append", "--writers", "1,2", "--batches", "3", "--duration", "40ms")
	require.NoError(t, err)

	lines, summary := splitBenchOutput(t, out)
	require.Len(t, lines, 2, out)
	for i, l := range lines {
		require.Equal(t, "append", l["scenario"])
		require.EqualValues(t, i+1, l["writers"])
		require.EqualValues(t, 3, l["batch"])
		require.Equal(t, "raw_insert", l["baseline"])
		require.Positive(t, l["baseline_per_sec"])
		require.Positive(t, l["ratio"])
	}
	require.True(t, strings.HasPrefix(summary, "\nappend: converge events/s against raw INSERTs"), summary)
	require.Contains(t, summary, "WRITERS  BATCH  CONVERGE/S  RAW/S  RATIO")
	require.Len(t, strings.Split(strings.TrimSpace(summary), "\n"), 4, "title, header and a row per pair")

	require.Empty(t, benchSchemas(t, db, db.Schema), "the bench schema is dropped")
	var exists bool
	require.NoError(t, db.Pool.QueryRow(t.Context(), "SELECT to_regnamespace($1) IS NOT NULL", db.Schema).Scan(&exists))
	require.False(t, exists, "--schema names a prefix; the schema itself is never created")
}

// TestBenchContended: the contended scenario prints a line per method
// (Append, AppendTx) at the given writer count, and its summary.
func TestBenchContended(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	out, err := runCLI(t, "bench", "--database-url", db.URL, "--schema", db.Schema,
		"--scenario", "contended", "--writers", "3", "--duration", "40ms")
	require.NoError(t, err)
	lines, summary := splitBenchOutput(t, out)
	require.Len(t, lines, 2, out)
	for i, l := range lines {
		require.Equal(t, "contended", l["scenario"])
		require.Equal(t, []string{"append", "append_tx"}[i], l["method"])
		require.EqualValues(t, 3, l["writers"])
		require.Equal(t, "raw_insert", l["baseline"])
		require.Positive(t, l["ratio"])
	}
	require.Contains(t, summary, "METHOD     WRITERS  CONVERGE/S  RAW/S  RATIO")
	require.Empty(t, benchSchemas(t, db, db.Schema), "the bench schema is dropped")
}

func TestBenchPropagationJSONOnly(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	out, err := runCLI(t, "bench", "--database-url", db.URL, "--schema", db.Schema,
		"--scenario", "propagation", "--rate", "100", "--duration", "200ms", "--json")
	require.NoError(t, err)

	lines, rest := splitBenchOutput(t, out)
	require.Empty(t, rest, "--json prints JSON lines only")
	require.Len(t, lines, 3)
	for i, method := range []string{"poll_50ms", "poll_1s", "push"} {
		require.Equal(t, method, lines[i]["method"])
		require.Equal(t, "poll_50ms", lines[i]["baseline"])
		require.Equal(t, lines[0]["p99_ms"], lines[i]["baseline_p99_ms"])
		require.Positive(t, lines[i]["ratio"])
	}
	require.Empty(t, benchSchemas(t, db, db.Schema), "the bench schema is dropped")
}

// TestBenchCommand: the command scenario runs at 200 steps/s unless
// --rate says otherwise, measures watermill-sql first, and leaves nothing
// behind (watermill-sql's tables live in the bench schema).
func TestBenchCommand(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	out, err := runCLI(t, "bench", "--database-url", db.URL, "--schema", db.Schema,
		"--scenario", "command", "--duration", "100ms")
	require.NoError(t, err)

	lines, summary := splitBenchOutput(t, out)
	require.Len(t, lines, 2, out)
	for i, method := range []string{"watermill_sql", "feed"} {
		require.Equal(t, "command", lines[i]["scenario"])
		require.Equal(t, method, lines[i]["method"])
		require.EqualValues(t, 200, lines[i]["rate"], "the command scenario's own default rate")
		require.EqualValues(t, 20, lines[i]["commands"])
		require.Equal(t, "watermill_sql", lines[i]["baseline"])
		require.Equal(t, lines[0]["p50_ms"], lines[i]["baseline_p50_ms"])
		require.Positive(t, lines[i]["ratio"])
	}
	require.True(t, strings.HasPrefix(summary, "\ncommand at 200 steps/s"), summary)
	require.Contains(t, summary, "METHOD         COMMANDS  STEPS/S  P50 MS")
	require.Empty(t, benchSchemas(t, db, db.Schema), "the bench schema is dropped")
	var left bool
	require.NoError(t, db.Pool.QueryRow(t.Context(), "SELECT to_regclass('public.watermill_bench_ping') IS NOT NULL").Scan(&left))
	require.False(t, left, "watermill-sql's tables were made in the bench schema")
}

func TestBenchKeep(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	out, err := runCLI(t, "bench", "--database-url", db.URL, "--schema", db.Schema,
		"--writers", "1", "--batches", "1", "--duration", "20ms", "--json", "--keep")
	require.NoError(t, err)
	kept := benchSchemas(t, db, db.Schema)
	require.Len(t, kept, 1)
	t.Cleanup(func() {
		_, err := db.Pool.Exec(context.WithoutCancel(t.Context()), "DROP SCHEMA "+pgx.Identifier{kept[0]}.Sanitize()+" CASCADE")
		require.NoError(t, err)
	})
	require.Contains(t, out, "bench schema kept: "+kept[0]+"\n")
}

// TestBenchDropFailureIsAnError holds a lock the drop needs: the drop
// must fail with PostgreSQL's reason and the command that finishes the job.
func TestBenchDropFailureIsAnError(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	ctx := t.Context()
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	_, err = tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{db.Schema, "events"}.Sanitize()+" IN ACCESS SHARE MODE")
	require.NoError(t, err)

	err = dropBenchSchema(ctx, db.Pool, db.Schema, 200*time.Millisecond)
	require.ErrorContains(t, err, "bench: drop schema "+db.Schema+": ")
	// PostgreSQL's lock timeout says why; on a loaded machine the overall
	// deadline can end the statement first. Either is the drop failing.
	require.Regexp(t, "lock timeout|deadline exceeded", err.Error())
	require.ErrorContains(t, err, "(drop it by hand: psql -c 'DROP SCHEMA \""+db.Schema+"\" CASCADE')")

	require.NoError(t, tx.Rollback(ctx))
	// Once the lock is gone the same call succeeds.
	require.NoError(t, dropBenchSchema(ctx, db.Pool, db.Schema, time.Second))
}

func TestBenchRejectsBadOptions(t *testing.T) {
	t.Parallel()
	url := []string{"--database-url", "postgres://nobody@127.0.0.1:1/none"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--scenario", "nope"}, `--scenario "nope": unknown (choose one of append, command, contended, parallel, propagation, rebuild, saga)`},
		{[]string{"--scenario", "saga", "--sagas", "0"}, "--sagas 0: use 1 to 100000"},
		{[]string{"--scenario", "saga", "--partitions", "2,8"}, "--partitions [2 8]: the saga scenario runs one partition count (e.g. --partitions 8)"},
		{[]string{"--scenario", "saga", "--partitions", "0"}, "--partitions [0]: each count must be 1 to 1024"},
		{[]string{"--scenario", "rebuild", "--events", "0"}, "--events 0: use 1 to 10000000"},
		{[]string{"--scenario", "rebuild", "--events", "-5"}, "--events -5: use 1 to 10000000"},
		{[]string{"--writers", "0"}, "--writers 0: use 1 to 64"},
		{[]string{"--scenario", "propagation", "--rate", "0"}, "--rate 0: use 1 to 20000 events per second"},
		// A tuning flag the scenario does not read is refused, whatever
		// its value.
		{[]string{"--scenario", "saga", "--duration", "5s"}, "--duration does not apply to the saga scenario, which reads only --sagas, --partitions: leave it out"},
		{[]string{"--scenario", "rebuild", "--partitions", "4"}, "--partitions does not apply to the rebuild scenario"},
		{[]string{"--rate", "100"}, "--rate does not apply to the append scenario"},
		{[]string{"--scenario", "contended", "--batches", "10"}, "--batches does not apply to the contended scenario"},
		{[]string{"--schema", strings.Repeat("s", 49)}, `bench appends "_bench_" and 8 characters to it, which makes it too long; use at most 48 characters`},
		// Each count is a run: the same one twice is no comparison.
		{[]string{"--writers", "1,1"}, "--writers 1,1: 1 is listed twice; list each count once"},
		{[]string{"--writers", "8,1,8"}, "--writers 8,1,8: 8 is listed twice; list each count once"},
		{[]string{"--batches", "10,1,10"}, "--batches 10,1,10: 10 is listed twice; list each count once"},
		{[]string{"--scenario", "contended", "--writers", "4,4"}, "--writers 4,4: 4 is listed twice"},
		{[]string{"--scenario", "parallel", "--partitions", "1,1"}, "--partitions 1,1: 1 is listed twice; list each count once"},
		// A tiny --duration measured nothing and printed rates of 0; a
		// huge one overflowed the command scenario's deadline.
		{[]string{"--duration", "1ns"}, "--duration 1ns: use 10ms to 1h0m0s, such as 3s, or leave it out for the scenario's default"},
		{[]string{"--duration", "-1s"}, "--duration -1s: use 10ms to 1h0m0s"},
		{[]string{"--scenario", "command", "--duration", "2562047h"}, "--duration 2562047h0m0s: use 10ms to 1h0m0s"},
		{[]string{"--scenario", "propagation", "--rate", "10", "--duration", "50ms"}, "--duration 50ms: at --rate 10 a second it appends no event; use at least 100ms, or a higher --rate"},
	} {
		_, err := runCLI(t, append(append([]string{"bench"}, url...), tc.args...)...)
		require.ErrorContains(t, err, tc.want, tc.args)
	}
}

// newAppendBench is a short append bench against db, writing its output
// to out, whose schema suffixes are suffixes in turn.
func newAppendBench(t *testing.T, db *pgtest.DB, out *strings.Builder, duration time.Duration, suffixes ...string) *benchCmd {
	t.Helper()
	next := 0
	c := &benchCmd{
		db:          &dbOptions{URL: db.URL, Schema: db.Schema},
		scenario:    "append",
		events:      1,
		writers:     []int{1},
		batches:     []int{1},
		duration:    duration,
		rate:        1,
		sagas:       1,
		out:         out,
		errOut:      out,
		dropTimeout: 300 * time.Millisecond,
		suffix: func() string {
			s := suffixes[min(next, len(suffixes)-1)]
			next++
			return s
		},
	}
	require.NoError(t, c.validate())
	return c
}

// TestBenchFailsWhenItCannotDropItsSchema: a session holding a lock inside
// the bench schema makes the final drop fail; the run reports it after its
// results and fails, naming the schema to drop by hand.
func TestBenchFailsWhenItCannotDropItsSchema(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	ctx := t.Context()
	var out strings.Builder
	c := newAppendBench(t, db, &out, time.Second, "00000001")
	schema := c.benchSchema("00000001")
	t.Cleanup(func() {
		_, err := db.Pool.Exec(context.WithoutCancel(ctx), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
		require.NoError(t, err)
	})
	done := make(chan error, 1)
	go func() { done <- c.run(ctx) }()
	// Once bench has migrated its schema, a lock on its events table that
	// the final DROP ... CASCADE waits for (writers' inserts do not).
	events := schema + ".events"
	require.Eventually(t, func() bool {
		var ok bool
		return db.Pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", events).Scan(&ok) == nil && ok
	}, 30*time.Second, 5*time.Millisecond, "bench did not migrate its schema")
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	_, err = tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{schema, "events"}.Sanitize()+" IN ACCESS SHARE MODE")
	require.NoError(t, err)

	err = <-done
	require.ErrorContains(t, err, "bench: drop schema "+schema+": ")
	require.ErrorContains(t, err, "lock timeout")
	require.ErrorContains(t, err, "drop it by hand")
	lines, _ := splitBenchOutput(t, out.String())
	require.Len(t, lines, 1, "the results came out before the failed drop")
	require.Equal(t, []string{schema}, benchSchemas(t, db, db.Schema))
}

// TestBenchLeavesAnExistingSchemaAlone: bench drops its schema at the end,
// so it never runs in one that exists already (its random suffix met
// twice): it migrated into it and dropped it, with what it held. It takes
// another suffix, and fails, naming them, when every one it tried is taken.
func TestBenchLeavesAnExistingSchemaAlone(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	ctx := t.Context()
	var out strings.Builder
	c := newAppendBench(t, db, &out, 20*time.Millisecond, "00000002", "00000003")
	taken := c.benchSchema("00000002")
	precious := pgx.Identifier{taken, "precious"}.Sanitize()
	_, err := db.Pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{taken}.Sanitize()+"; CREATE TABLE "+precious+" (id int); INSERT INTO "+precious+" VALUES (7)")
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := db.Pool.Exec(context.WithoutCancel(ctx), "DROP SCHEMA IF EXISTS "+pgx.Identifier{taken}.Sanitize()+" CASCADE")
		require.NoError(t, err)
	})

	require.NoError(t, c.run(ctx), out.String())
	var id int
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT id FROM "+precious).Scan(&id), "the existing schema's table is gone")
	require.Equal(t, 7, id)
	require.Equal(t, []string{taken}, benchSchemas(t, db, db.Schema), "bench ran in another schema, and dropped it")

	out.Reset()
	c = newAppendBench(t, db, &out, 20*time.Millisecond, "00000002")
	err = c.run(ctx)
	require.ErrorContains(t, err, "bench: schemas "+taken+", "+taken)
	require.ErrorContains(t, err, "exist already")
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT id FROM "+precious).Scan(&id))
}

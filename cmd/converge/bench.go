package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/bench"
	"github.com/converge-es/converge/migrations"
)

// benchSchemaInfix joins --schema and a random suffix into the name of the
// throw-away schema a bench run works in.
const benchSchemaInfix = "_bench_"

// benchSuffixLen is the length of the random hex suffix of a bench schema.
const benchSuffixLen = 8

// benchDropTimeout bounds the DROP SCHEMA at the end of a run, including
// waiting for locks, so a run never hangs on its clean-up.
const benchDropTimeout = 30 * time.Second

// benchScenarios are the scenarios `converge bench` knows, each a function
// that runs it against a freshly migrated throw-away schema and returns
// the human summary's writer.
var benchScenarios = map[string]func(ctx context.Context, c *benchCmd, store *pgstore.Store) (summary func(io.Writer) error, err error){
	"append":      runAppendBench,
	"command":     runCommandBench,
	"contended":   runContendedBench,
	"propagation": runPropagationBench,
	"parallel":    runParallelBench,
	"rebuild":     runRebuildBench,
	"saga":        runSagaBench,
}

// benchScenarioFlags lists, per scenario, the tuning flags it reads. A
// tuning flag given to a scenario that does not read it is refused: a
// figure measured without it must not pass for one measured with it.
var benchScenarioFlags = map[string][]string{
	"append":      {"writers", "batches", "duration"},
	"command":     {"rate", "duration"},
	"contended":   {"writers", "duration"},
	"propagation": {"rate", "duration"},
	"parallel":    {"events", "partitions"},
	"rebuild":     {"events"},
	"saga":        {"sagas", "partitions"},
}

// benchTuningFlags are the flags benchScenarioFlags speaks of.
var benchTuningFlags = []string{"batches", "duration", "events", "partitions", "rate", "sagas", "writers"}

// checkFlagsApply refuses a tuning flag the scenario does not read.
func checkFlagsApply(scenario string, changed func(name string) bool) error {
	reads, ok := benchScenarioFlags[scenario]
	if !ok {
		return nil // validate names the unknown scenario
	}
	for _, name := range benchTuningFlags {
		if changed(name) && !slices.Contains(reads, name) {
			return fmt.Errorf("--%s does not apply to the %s scenario, which reads only --%s: leave it out",
				name, scenario, strings.Join(reads, ", --"))
		}
	}
	return nil
}

// minBenchDuration and maxBenchDuration bound --duration. A shorter one
// measures next to nothing (append and contended split it into 4 rounds a
// side; at 1ns they printed rates and ratios of 0 as if measured). A
// longer one makes a soak test of a comparison, and the bound keeps the
// arithmetic on it far from overflowing (the command scenario's deadline,
// --duration plus 30s, wrapped into the past near the largest duration).
const (
	minBenchDuration = 10 * time.Millisecond
	maxBenchDuration = time.Hour
)

// checkDistinct refuses a count listed twice in --flag: each count is a
// run, and the same run twice (the baseline against itself, for the
// first --partitions) is no comparison.
func checkDistinct(flag string, counts []int) error {
	for i, n := range counts {
		if slices.Contains(counts[:i], n) {
			text := make([]string, len(counts))
			for j, m := range counts {
				text[j] = strconv.Itoa(m)
			}
			return fmt.Errorf("--%s %s: %d is listed twice; list each count once", flag, strings.Join(text, ","), n)
		}
	}
	return nil
}

// sagaBenchConns is the pool size the saga scenario needs: its writers,
// the baseline's, and the connections its processors hold in their units.
const sagaBenchConns = 40

// benchCmd is `converge bench`: one scenario against its baseline in a
// throw-away schema.
type benchCmd struct {
	db       *dbOptions
	scenario string
	writers  []int
	// writersSet says whether --writers was given.
	writersSet bool
	batches    []int
	duration   time.Duration
	rate       int
	events     int
	partitions []int
	sagas      int
	keep       bool
	// json prints the JSON lines only, without the human summary.
	json   bool
	out    io.Writer
	errOut io.Writer
	// dropTimeout bounds the final DROP SCHEMA's wait for locks (half of
	// it is its lock_timeout). Defaults to
	// benchDropTimeout; tests shorten it.
	dropTimeout time.Duration
	// suffix makes the random part of the schema name. Defaults to
	// randomSuffix; tests fix it.
	suffix func() string
}

func (c *benchCmd) validate() error {
	if _, ok := benchScenarios[c.scenario]; !ok {
		names := make([]string, 0, len(benchScenarios))
		for n := range benchScenarios {
			names = append(names, n)
		}
		slices.Sort(names)
		return fmt.Errorf("--scenario %q: unknown (choose one of %s)", c.scenario, strings.Join(names, ", "))
	}
	for _, w := range c.writers {
		if w < 1 || w > 64 {
			return fmt.Errorf("--writers %d: use 1 to 64", w)
		}
	}
	for _, b := range c.batches {
		if b < 1 || b > 1000 {
			return fmt.Errorf("--batches %d: use 1 to 1000", b)
		}
	}
	for _, err := range []error{checkDistinct("writers", c.writers), checkDistinct("batches", c.batches), checkDistinct("partitions", c.partitions)} {
		if err != nil {
			return err
		}
	}
	if c.scenario == "parallel" {
		if c.events < 1 || c.events > 1_000_000 {
			return fmt.Errorf("--events %d: use 1 to 1000000", c.events)
		}
		if len(c.partitions) == 0 {
			return errors.New("--partitions is empty: list the partition counts to run, the first being the baseline (e.g. 1,8)")
		}
	}
	if c.scenario == "rebuild" && (c.events < 1 || c.events > 10_000_000) {
		// The bench would read 0 or less as "the default" and run 200,000.
		return fmt.Errorf("--events %d: use 1 to 10000000 (the rebuild scenario defaults to 200000)", c.events)
	}
	if c.scenario == "saga" && len(c.partitions) != 1 {
		return fmt.Errorf("--partitions %v: the saga scenario runs one partition count (e.g. --partitions 8)", c.partitions)
	}
	for _, p := range c.partitions {
		if p < 1 || p > 1024 {
			return fmt.Errorf("--partitions %v: each count must be 1 to 1024", c.partitions)
		}
	}
	if c.sagas < 1 || c.sagas > 100_000 {
		return fmt.Errorf("--sagas %d: use 1 to 100000", c.sagas)
	}
	if c.rate < 1 || c.rate > 20000 {
		return fmt.Errorf("--rate %d: use 1 to 20000 events per second", c.rate)
	}
	if c.duration != 0 && (c.duration < minBenchDuration || c.duration > maxBenchDuration) {
		return fmt.Errorf("--duration %s: use %s to %s, such as 3s, or leave it out for the scenario's default", c.duration, minBenchDuration, maxBenchDuration)
	}
	if c.scenario == "propagation" && c.duration != 0 && c.duration < time.Second/time.Duration(c.rate) {
		return fmt.Errorf("--duration %s: at --rate %d a second it appends no event; use at least %s, or a higher --rate", c.duration, c.rate, time.Second/time.Duration(c.rate))
	}
	if c.db != nil {
		if err := migrations.ValidateSchema(c.benchSchema(strings.Repeat("0", benchSuffixLen))); err != nil {
			return fmt.Errorf("--schema %q: bench appends %q and %d characters to it, which makes it too long; use at most %d characters",
				c.db.Schema, benchSchemaInfix, benchSuffixLen, 63-len(benchSchemaInfix)-benchSuffixLen)
		}
	}
	return nil
}

// benchSchema is the name of the throw-away schema with the given suffix.
func (c *benchCmd) benchSchema(suffix string) string {
	return c.db.Schema + benchSchemaInfix + suffix
}

func newBenchCmd() *cobra.Command {
	c := &benchCmd{dropTimeout: benchDropTimeout, suffix: randomSuffix}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure converge against a baseline in the same run",
		Long: `bench runs a scenario against PostgreSQL in a throw-away schema named
<--schema>_bench_<random> (converge_bench_1a2b3c4d by default; --schema itself
is never touched, nor is a schema of that name that exists already: bench
takes another suffix). The schema is dropped at the end unless --keep; if
the drop fails, bench fails and names the schema to drop by hand.

It prints one JSON object per measurement, then a short table for people;
--json prints the JSON lines only. Every line carries converge's figure,
the baseline it is compared with ("baseline"), the baseline's figure in
the same run and their "ratio": on a shared machine only the ratio is worth
comparing. A tuning flag the scenario does not read (--duration for
saga, say) is refused.

Scenarios:
  append   N concurrent writers appending 1- and 10-event batches, against
           raw pgx INSERTs of the same rows at the same concurrency
           (baseline "raw_insert"). ratio = converge events/s / raw
           events/s: 1 is parity, higher is better.
  contended
           --writers writers (8 unless given) append one event at a time
           to one stream, by Append and by AppendTx (each in a transaction
           of its own), against raw INSERTs of the same rows at the same
           concurrency ("raw_insert"). ratio = converge events/s / raw
           events/s: what appends keep of the raw rate when every writer
           appends to the same stream.
  command  a saga-like step in one process sends a command, at a steady
           --rate (200 unless given), to its handler in another process,
           and measures step commit to handler start per command. The
           baseline ("watermill_sql", measured first) publishes the same
           commands with watermill-sql's publisher on the step's
           transaction and consumes them with its subscriber at its
           default 1s poll; "feed" appends them to command streams in the
           step's unit and delivers them with the command package
           (LISTEN/NOTIFY). ratio = baseline p50 / the method's p50: above
           1 means commands reach their handler sooner.
  propagation
           appends at a steady --rate and measures, per event, commit to
           waiter woken for a projection in another process. Methods:
           poll_50ms (per-request polling of the checkpoint every 50ms, the
           baseline, measured first), poll_1s (every second), push (LISTEN/
           NOTIFY and consistency.Tracker, last). ratio = poll_50ms p99 /
           the method's p99: above 1 means waiters learn sooner than with
           50ms polling (the baseline's own line says 1).
  parallel a consumer whose handler spends 2ms per event (standing in for
           a call to another service) handles --events events with each
           of --partitions partitions, shared by two processors in this
           process (as two processes would share them). The baseline is
           the first partition count; ratio = events/s / baseline's.
  rebuild  stores --events events (200,000 unless given) over 1,000
           streams, lets a projection keeping a row per stream catch up,
           then rebuilds it beside its live generation, three times, each
           rebuild followed by the baseline: a raw sequential pgx read of
           the same events ("raw_read"). Each side reports its median;
           ratio = rebuild events/s / raw read events/s.
           The line also gives the live catch-up rate and the process's
           peak RSS.
  saga     runs --sagas order-like sagas of four steps (each sends a
           command whose handler appends the next event; one step is
           gated on a read model) end to end, in memory and then on
           PostgreSQL, each after an unmeasured warm-up of a fifth as
           many (on PostgreSQL the tables are then analyzed, standing in
           for autovacuum). Baselines: a Watermill router's no-op handler
           on gochannel in memory ("gochannel_router", msgs/s), single-row
           commits at the same concurrency on PostgreSQL ("raw_commit");
           ratio = sagas/s / baseline. --partitions (one count, 4 unless
           given) splits the saga processor and each command handler. The
           PostgreSQL line also gives the round trips to the database per
           saga (statements and batches, every consumer's share).`,
		Example: `  converge bench --database-url postgres://postgres@127.0.0.1:5432/test
  converge bench --scenario propagation --rate 2000 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := dbOptionsFrom(cmd)
			if err != nil {
				return err
			}
			c.db = db
			if err := checkFlagsApply(c.scenario, cmd.Flags().Changed); err != nil {
				return err
			}
			c.writersSet = cmd.Flags().Changed("writers")
			if c.scenario == "rebuild" && !cmd.Flags().Changed("events") {
				c.events = 200_000
			}
			if c.scenario == "command" && !cmd.Flags().Changed("rate") {
				c.rate = 200
			}
			if c.scenario == "saga" && !cmd.Flags().Changed("partitions") {
				c.partitions = []int{bench.DefaultSagaPartitions}
			}
			c.out = cmd.OutOrStdout()
			c.errOut = cmd.ErrOrStderr()
			if err := c.validate(); err != nil {
				return err
			}
			return c.run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.scenario, "scenario", "append", "scenario to run: append, contended, command, propagation, parallel, rebuild or saga")
	f.IntVar(&c.events, "events", 2000, "events to handle per run (parallel; rebuild defaults to 200000)")
	f.IntVar(&c.sagas, "sagas", 500, "sagas to run per store (saga)")
	f.IntSliceVar(&c.partitions, "partitions", []int{1, 8}, "partition counts to run, the first is the baseline (parallel); the saga processor's and each command handler's partitions (saga, default 4)")
	f.IntSliceVar(&c.writers, "writers", []int{1, 8}, "concurrent writers (append; contended defaults to 8)")
	f.IntSliceVar(&c.batches, "batches", []int{1, 10}, "events per append (append)")
	f.IntVar(&c.rate, "rate", 500, "steady rate per second: appends (propagation, default 500), steps sending a command (command, default 200)")
	f.DurationVar(&c.duration, "duration", 0, "measuring time per pair and side, "+minBenchDuration.String()+" to "+maxBenchDuration.String()+" (default: the scenario's, sized to finish within 30s)")
	f.BoolVar(&c.keep, "keep", false, "keep the bench schema instead of dropping it")
	f.BoolVar(&c.json, "json", false, "print the JSON lines only, without the summary table")
	return cmd
}

func (c *benchCmd) run(ctx context.Context) (err error) {
	// The writers need their own connections; each store's listener takes
	// one, and the propagation scenario runs two stores.
	conns := int32(slices.Max(append(slices.Clone(c.writers), 1)) + 6)
	if c.scenario == "saga" {
		conns = max(conns, sagaBenchConns)
	}
	pool, err := c.db.openPoolWith(ctx, conns)
	if err != nil {
		return err
	}
	defer pool.Close()
	schema, err := createBenchSchema(ctx, pool, c)
	if err != nil {
		return err
	}
	if c.keep {
		fmt.Fprintf(c.errOut, "bench schema kept: %s\n", schema)
	} else {
		// Deferred so an interrupted or failed run cleans up too; the
		// pool is closed after it (defers run last in, first out).
		defer func() {
			if derr := dropBenchSchema(context.WithoutCancel(ctx), pool, schema, c.dropTimeout); derr != nil {
				err = errors.Join(err, derr)
			}
		}()
	}
	if _, err := migrations.Migrate(ctx, pool, &migrations.Config{Schema: schema}); err != nil {
		return err
	}
	store, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: schema})
	if err != nil {
		return err
	}
	summary, err := benchScenarios[c.scenario](ctx, c, store)
	// The store's listener holds a connection; close it before the drop.
	if cerr := store.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if c.json {
		return nil
	}
	// A blank line sets the table apart from the JSON lines.
	if _, err := fmt.Fprintln(c.out); err != nil {
		return err
	}
	return summary(c.out)
}

// createBenchSchema creates a new schema for the run, and returns its
// name. It never reuses one: the run drops its schema at the end, and a
// schema of the same name made by someone else (a name picked by hand, or
// a random suffix met twice) would be dropped with everything in it. A
// taken name gets a new suffix, a few times.
func createBenchSchema(ctx context.Context, pool *pgxpool.Pool, c *benchCmd) (string, error) {
	const tries = 5
	var taken []string
	for range tries {
		schema := c.benchSchema(c.suffix())
		_, err := pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize())
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P06" { // duplicate_schema
			taken = append(taken, schema)
			continue
		}
		if err != nil {
			return "", fmt.Errorf("bench: create schema %s: %w", schema, err)
		}
		return schema, nil
	}
	return "", fmt.Errorf("bench: schemas %s exist already: bench runs in a schema of its own, which it drops at the end, and leaves those alone (drop them if they are left from earlier runs, or pass another --schema)", strings.Join(taken, ", "))
}

// dropBenchSchema drops a bench run's schema, or says how to do it by hand.
// dropGrace is how long past its timeout dropBenchSchema waits for a
// server that does not answer.
const dropGrace = 10 * time.Second

func dropBenchSchema(ctx context.Context, pool *pgxpool.Pool, schema string, timeout time.Duration) error {
	// lock_timeout makes a drop stuck behind another session's lock fail
	// with PostgreSQL's message after timeout/2. The context only guards
	// against a server that does not answer at all: it ends well after
	// the lock timeout, so on a busy machine (a slow connect, a slow
	// BEGIN) the reason reported is still PostgreSQL's.
	ctx, cancel := context.WithTimeout(ctx, timeout+dropGrace)
	defer cancel()
	drop := "DROP SCHEMA " + pgx.Identifier{schema}.Sanitize() + " CASCADE"
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d", max(1, (timeout/2).Milliseconds()))); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, drop)
		return err
	})
	if err != nil {
		return fmt.Errorf("bench: drop schema %s: %w (drop it by hand: psql -c '%s')", schema, err, drop)
	}
	return nil
}

func runAppendBench(ctx context.Context, c *benchCmd, store *pgstore.Store) (func(io.Writer) error, error) {
	res, err := bench.Append(ctx, store.Pool(), store, &bench.AppendConfig{
		Writers: c.writers, Batches: c.batches, Duration: c.duration,
	}, c.out)
	return func(w io.Writer) error { return bench.WriteAppendSummary(w, res) }, err
}

func runContendedBench(ctx context.Context, c *benchCmd, store *pgstore.Store) (func(io.Writer) error, error) {
	cfg := &bench.ContendedConfig{Duration: c.duration}
	if c.writersSet {
		cfg.Writers = c.writers
	}
	res, err := bench.Contended(ctx, store.Pool(), store, cfg, c.out)
	return func(w io.Writer) error { return bench.WriteContendedSummary(w, res) }, err
}

func runPropagationBench(ctx context.Context, c *benchCmd, store *pgstore.Store) (func(io.Writer) error, error) {
	res, err := bench.Propagation(ctx, store.Pool(), store.Schema(), &bench.PropagationConfig{
		Rate: c.rate, Duration: c.duration,
	}, c.out)
	return func(w io.Writer) error { return bench.WritePropagationSummary(w, res) }, err
}

func runCommandBench(ctx context.Context, c *benchCmd, store *pgstore.Store) (func(io.Writer) error, error) {
	res, err := bench.Command(ctx, store.Pool(), store.Schema(), &bench.CommandConfig{Rate: c.rate, Duration: c.duration}, c.out)
	return func(w io.Writer) error { return bench.WriteCommandSummary(w, res) }, err
}

func runParallelBench(ctx context.Context, c *benchCmd, store *pgstore.Store) (func(io.Writer) error, error) {
	res, err := bench.Parallel(ctx, store, &bench.ParallelConfig{Events: c.events, Partitions: c.partitions}, c.out)
	return func(w io.Writer) error { return bench.WriteParallelSummary(w, res) }, err
}

func runRebuildBench(ctx context.Context, c *benchCmd, store *pgstore.Store) (func(io.Writer) error, error) {
	res, err := bench.Rebuild(ctx, store.Pool(), store.Schema(), &bench.RebuildConfig{Events: c.events}, c.out)
	return func(w io.Writer) error { return bench.WriteRebuildSummary(w, res) }, err
}

func runSagaBench(ctx context.Context, c *benchCmd, store *pgstore.Store) (func(io.Writer) error, error) {
	res, err := bench.Saga(ctx, store.Pool(), store.Schema(), &bench.SagaConfig{Sagas: c.sagas, Partitions: c.partitions[0]}, c.out)
	return func(w io.Writer) error { return bench.WriteSagaSummary(w, res) }, err
}

func randomSuffix() string {
	b := make([]byte, benchSuffixLen/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

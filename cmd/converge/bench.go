package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/bench"
	"github.com/converge-es/converge/migrations"
)

// benchScenarios are the scenarios `converge bench` knows, each a function
// that runs it against a freshly migrated throw-away schema.
var benchScenarios = map[string]func(ctx context.Context, o *benchOptions, env *benchEnv) error{
	"append":      runAppendBench,
	"propagation": runPropagationBench,
}

type benchOptions struct {
	Scenario string
	Writers  []int
	Batches  []int
	Duration time.Duration
	Rate     int
	Keep     bool
}

func (o *benchOptions) validate() error {
	if _, ok := benchScenarios[o.Scenario]; !ok {
		names := make([]string, 0, len(benchScenarios))
		for n := range benchScenarios {
			names = append(names, n)
		}
		slices.Sort(names)
		return fmt.Errorf("--scenario %q: unknown (choose one of %v)", o.Scenario, names)
	}
	for _, w := range o.Writers {
		if w < 1 || w > 64 {
			return fmt.Errorf("--writers %d: use 1 to 64", w)
		}
	}
	for _, b := range o.Batches {
		if b < 1 || b > 1000 {
			return fmt.Errorf("--batches %d: use 1 to 1000", b)
		}
	}
	if o.Rate < 1 || o.Rate > 20000 {
		return fmt.Errorf("--rate %d: use 1 to 20000 events per second", o.Rate)
	}
	if o.Duration < 0 {
		return fmt.Errorf("--duration must not be negative")
	}
	return nil
}

type benchEnv struct {
	cmd   *cobra.Command
	db    *dbOptions
	store *pgstore.Store
}

func newBenchCmd() *cobra.Command {
	o := &benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure converge against a baseline in the same run; prints JSON lines",
		Long: `bench runs a scenario against PostgreSQL in a throw-away schema (dropped
afterwards unless --keep) and prints one JSON object per line. Every line
carries converge's figure, a baseline measured in the same run and their
ratio: on a shared machine only the ratio is worth comparing.

Scenarios:
  append   N concurrent writers appending 1- and 10-event batches, against
           raw pgx INSERTs of the same rows at the same concurrency.
  propagation
           appends at a steady --rate and measures, per event, commit to
           waiter woken for a projection in another process (push: LISTEN/
           NOTIFY and consistency.Tracker), against per-request polling of
           the checkpoint every 1s and every 50ms. The push line is last.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			db, err := dbOptionsFrom(cmd)
			if err != nil {
				return err
			}
			return runBench(cmd, o, db)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Scenario, "scenario", "append", "scenario to run")
	f.IntSliceVar(&o.Writers, "writers", []int{1, 8}, "concurrent writers (append)")
	f.IntSliceVar(&o.Batches, "batches", []int{1, 10}, "events per append (append)")
	f.IntVar(&o.Rate, "rate", 500, "steady append rate in events per second (propagation)")
	f.DurationVar(&o.Duration, "duration", 0, "measuring time per pair and side (default: the scenario's, sized to finish within 30s)")
	f.BoolVar(&o.Keep, "keep", false, "keep the bench schema instead of dropping it")
	return cmd
}

func runBench(cmd *cobra.Command, o *benchOptions, db *dbOptions) error {
	ctx := cmd.Context()
	pool, err := db.openPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	schema := "converge_bench_" + randomSuffix()
	if _, err := migrations.Migrate(ctx, pool, &migrations.Config{Schema: schema}); err != nil {
		return err
	}
	if !o.Keep {
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_, _ = pool.Exec(dctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
		}()
	} else {
		fmt.Fprintf(cmd.ErrOrStderr(), "bench schema kept: %s\n", schema)
	}
	// The writers need their own connections; the store's listener takes one.
	need := int32(slices.Max(append(o.Writers, 1)) + 4)
	if pool.Config().MaxConns < need {
		pool.Close()
		cfg := pool.Config()
		cfg.MaxConns = need
		if pool, err = newPoolFromConfig(ctx, cfg); err != nil {
			return err
		}
		defer pool.Close()
	}
	store, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: schema})
	if err != nil {
		return err
	}
	defer store.Close()
	return benchScenarios[o.Scenario](ctx, o, &benchEnv{cmd: cmd, db: db, store: store})
}

func runAppendBench(ctx context.Context, o *benchOptions, env *benchEnv) error {
	_, err := bench.Append(ctx, env.store.Pool(), env.store, &bench.AppendConfig{
		Writers: o.Writers, Batches: o.Batches, Duration: o.Duration,
	}, env.cmd.OutOrStdout())
	return err
}

func runPropagationBench(ctx context.Context, o *benchOptions, env *benchEnv) error {
	_, err := bench.Propagation(ctx, env.store.Pool(), env.store.Schema(), &bench.PropagationConfig{
		Rate: o.Rate, Duration: o.Duration,
	}, env.cmd.OutOrStdout())
	return err
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func newPoolFromConfig(ctx context.Context, cfg *pgxpool.Config) (*pgxpool.Pool, error) {
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w (%s)", err, hintConnect)
	}
	return pool, nil
}

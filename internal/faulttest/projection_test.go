package faulttest_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/faulttest"
	"github.com/converge-es/converge/migrations"
	"github.com/converge-es/converge/projections"
)

// DurationEnv sets how long the faults go on, like -faults.duration.
const DurationEnv = "CONVERGE_FAULTS_DURATION"

var (
	longRun  = flag.Bool("faults.long", false, "run the fault-injection test for 10 minutes instead of 20 seconds (raise -timeout)")
	duration = flag.Duration("faults.duration", 0, "how long the fault-injection test injects faults (overrides -faults.long and $"+DurationEnv+")")
	leaseTTL = flag.Duration("faults.lease-ttl", 0, "the workers' feed LeaseTTL (default: feed.DefaultLeaseTTL)")
	idleTx   = flag.Duration("faults.idle-tx-timeout", 0, "the workers' idle_in_transaction_session_timeout (default: none)")
)

// faultDuration is how long this run injects faults: 20s by default, so
// the whole test stays under a minute.
func faultDuration(t *testing.T) time.Duration {
	t.Helper()
	switch {
	case *duration > 0:
		return *duration
	case os.Getenv(DurationEnv) != "":
		d, err := time.ParseDuration(os.Getenv(DurationEnv))
		require.NoError(t, err, "%s must be a Go duration such as 10m", DurationEnv)
		return d
	case *longRun:
		return 10 * time.Minute
	}
	return 20 * time.Second
}

const (
	projectionWorkerRole = "projection-worker"
	projectionName       = "fault_totals"
	accountsTable        = "accounts"
	// Environment of the worker processes.
	envDatabaseURL = "FAULTTEST_DATABASE_URL"
	envLeaseTTL    = "FAULTTEST_LEASE_TTL"
	envIdleTx      = "FAULTTEST_IDLE_TX_TIMEOUT"
)

// Added is the workload's event: Seq numbers the writer's appends, so a
// retry that doubled an event would show even under a fresh id.
type Added struct {
	Seq     int    `json:"seq"`
	Account string `json:"account"`
	Amount  int    `json:"amount"`
}

// Total is the projection's row; Count makes a double application show.
type Total struct {
	Sum   int `json:"sum"`
	Count int `json:"count"`
}

func registry() *events.Registry {
	reg := events.NewRegistry()
	events.Register[Added](reg, "faulttest.added")
	return reg
}

// totals sums the amounts per account: a projection that accumulates, so
// an event applied twice (or skipped) changes the result.
func totals() *projections.Projection {
	p := projections.New(projectionName, nil)
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Added) error {
		accounts := tx.Table(accountsTable)
		t, _, err := projections.Get[Total](ctx, accounts, e.Account)
		if err != nil {
			return err
		}
		return accounts.Put(ctx, e.Account, Total{Sum: t.Sum + e.Amount, Count: t.Count + 1})
	})
	return p
}

// projectionWorker runs the totals projection until SIGTERM, reporting its
// lease changes and its first delivery after each acquisition.
func projectionWorker(ctx context.Context, w *faulttest.Worker) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("pid", os.Getpid())
	ttl, err := time.ParseDuration(w.Env(envLeaseTTL))
	if err != nil {
		return fmt.Errorf("%s: %w", envLeaseTTL, err)
	}
	store, closeStore, err := workerStore(ctx, w, 6, registry(), log)
	if err != nil || store == nil {
		return err
	}
	defer closeStore()

	var acquired atomic.Bool
	runner, err := projections.NewRunner(&projections.RunnerConfig{
		Source:      store,
		Projections: []*projections.Projection{totals()},
		Logger:      log,
		Subscriber: &feed.SubscriberConfig{
			LeaseTTL: ttl,
			OnLeaseChange: func(ev feed.LeaseEvent) {
				acquired.Store(ev.Kind == feed.LeaseAcquired)
				w.Report(faulttest.ReportLease, string(ev.Kind))
			},
		},
		OnCommitted: func(_ string, pos events.Token) {
			if acquired.CompareAndSwap(true, false) {
				w.Report(faulttest.ReportDelivering, pos.String())
			}
		},
	})
	if err != nil {
		return err
	}
	if err := retry(ctx, func() error { return runner.Start(ctx) }); err != nil {
		return nil
	}
	<-ctx.Done()
	stop, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return runner.Stop(stop)
}

// workerStore opens a worker's pool of maxConns connections (with the
// test's idle-transaction timeout, if any) and its store. The database may
// be down while the worker starts, so it keeps trying; a nil store and no
// error mean ctx ended first.
func workerStore(ctx context.Context, w *faulttest.Worker, maxConns int32, reg *events.Registry, log *slog.Logger) (*pgstore.Store, func(), error) {
	pcfg, err := pgxpool.ParseConfig(w.Env(envDatabaseURL))
	if err != nil {
		return nil, nil, err
	}
	pcfg.MaxConns = maxConns
	if d, err := time.ParseDuration(w.Env(envIdleTx)); err == nil && d > 0 {
		pcfg.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = strconv.FormatInt(d.Milliseconds(), 10)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, nil, err
	}
	var store *pgstore.Store
	if retry(ctx, func() error {
		var err error
		store, err = pgstore.New(ctx, pool, &pgstore.Config{Registry: reg, Logger: log})
		return err
	}) != nil {
		pool.Close()
		return nil, nil, nil //nolint:nilerr // ctx ended before the database came back: the worker just stops
	}
	return store, func() { _ = store.Close(); pool.Close() }, nil
}

// retry calls f until it succeeds or ctx ends.
func retry(ctx context.Context, f func() error) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if err := f(); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// fixture is a throw-away cluster with converge migrated into database
// "converge", a store on it for the test's own appends and checks, and
// worker processes running the totals projection.
type fixture struct {
	cluster *faulttest.Cluster
	store   *pgstore.Store
	workers []*faulttest.Process
	meter   *faulttest.FailoverMeter
	ttl     time.Duration
}

func setup(t *testing.T, workers int, ttl time.Duration) *fixture {
	t.Helper()
	ctx := t.Context()
	f := &fixture{cluster: faulttest.StartCluster(t, nil), meter: &faulttest.FailoverMeter{}, ttl: ttl}
	url, err := f.cluster.CreateDatabase(ctx, "converge")
	require.NoError(t, err)
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = migrations.Migrate(ctx, pool, nil)
	require.NoError(t, err)
	f.store, err = pgstore.New(ctx, pool, &pgstore.Config{
		Registry:      registry(),
		DisableListen: true, // this process only appends and checks
		Logger:        slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.store.Close() })

	for i := range workers {
		f.workers = append(f.workers, faulttest.StartProcess(t, &faulttest.ProcessConfig{
			Role:     projectionWorkerRole,
			Name:     "worker-" + strconv.Itoa(i),
			Env:      []string{envDatabaseURL + "=" + url, envLeaseTTL + "=" + ttl.String(), envIdleTx + "=" + idleTx.String()},
			OnReport: f.meter.Observe,
		}))
	}
	return f
}

// startWriter appends one Added event per append, to eight accounts.
func (f *fixture) startWriter(t *testing.T) *faulttest.Writer {
	t.Helper()
	w, err := faulttest.StartWriter(t.Context(), &faulttest.WriterConfig{
		Store: f.store,
		Pace:  10 * time.Millisecond,
		Next: func(i int) (string, []events.Event) {
			acct := "acct-" + strconv.Itoa(i%8)
			return acct, []events.Event{{Data: Added{Seq: i, Account: acct, Amount: i%7 + 1}}}
		},
	})
	require.NoError(t, err)
	return w
}

// stopWorkers stops every worker gracefully; a worker that failed or
// raced (exit status 66 under -race) fails the test.
func (f *fixture) stopWorkers(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, w := range f.workers {
		require.NoError(t, w.Stop(ctx))
	}
}

// ttlFor is the lease TTL of this run.
func ttlFor() time.Duration {
	if *leaseTTL > 0 {
		return *leaseTTL
	}
	return feed.DefaultLeaseTTL
}

// TestProjectionsSurviveFaults runs three projection workers over one feed
// while a writer appends, kills a random worker every few seconds,
// restarts PostgreSQL twice (fast, then immediate shutdown; down 1s and 2s,
// or 5s and 12s in runs of a minute or more), and checks
// that nothing was lost or doubled: every confirmed append is stored once,
// the projection's checkpoint reaches the head, and its read model equals
// a recomputation from the stored events.
func TestProjectionsSurviveFaults(t *testing.T) {
	t.Parallel()
	d := faultDuration(t)
	f := setup(t, 3, ttlFor())
	w := f.startWriter(t)

	// Short outages in the quick run; long runs also outlast the lease, so
	// the holder loses it while alive.
	down1, down2 := time.Second, 2*time.Second
	if d >= time.Minute {
		down1, down2 = 5*time.Second, 12*time.Second
	}
	rep, err := faulttest.RunChaos(t.Context(), &faulttest.ChaosConfig{
		Processes: f.workers,
		Cluster:   f.cluster,
		Restarts: []faulttest.ClusterRestart{
			{At: d / 3, Mode: faulttest.ShutdownFast, Down: down1},
			{At: 2 * d / 3, Mode: faulttest.ShutdownImmediate, Down: down2},
		},
		Duration: d,
		OnKill:   f.meter.Killed,
		Logf:     t.Logf,
	})
	require.NoError(t, err)
	require.Len(t, rep.Restarts, 2, "both PostgreSQL restarts must have happened")
	res := w.Stop()
	t.Logf("writer: %d confirmed, %d unknown, %d retries; errors: %v", len(res.Confirmed), len(res.Unknown), res.Retries, res.Errors)
	require.NotEmpty(t, res.Confirmed)

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second+f.ttl)
	defer cancel()
	head, err := faulttest.AwaitCheckpoints(ctx, f.store, f.store, projectionName)
	require.NoError(t, err, "seed %d", rep.Seed)
	f.stopWorkers(t)

	apps, err := faulttest.CheckAppends(ctx, f.store, res, func(e events.Envelope) string {
		var a Added
		_ = json.Unmarshal(e.Payload, &a)
		return strconv.Itoa(a.Seq)
	})
	t.Logf("LeaseTTL %s, %d kills, seed %d; %s; failovers after killing the holder: %v; leases lost by a live holder: %d",
		f.ttl, len(rep.Kills), rep.Seed, apps, f.meter.Failovers(), f.meter.Losses())
	require.NotEmpty(t, rep.Kills, "no worker was killed (seed %d): the run tested no failover", rep.Seed)
	require.NoError(t, err)

	// The read model equals the events folded again.
	runner, err := projections.NewRunner(&projections.RunnerConfig{Source: f.store, Projections: []*projections.Projection{totals()}})
	require.NoError(t, err)
	want := map[string]Total{}
	var after events.Token
	for {
		page, err := f.store.ReadAll(ctx, after, 1000)
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			a, err := events.DecodeAs[Added](f.store.Registry(), e)
			require.NoError(t, err)
			tot := want[a.Account]
			want[a.Account] = Total{Sum: tot.Sum + a.Amount, Count: tot.Count + 1}
		}
		after = page[len(page)-1].Token
	}
	rows, err := runner.View(projectionName).Table(accountsTable).List(ctx, nil)
	require.NoError(t, err)
	got := map[string]Total{}
	for _, r := range rows {
		var tot Total
		require.NoError(t, r.Decode(&tot))
		got[r.Key] = tot
	}
	require.NoError(t, faulttest.Diff("read model vs recomputation", want, got))

	st, err := runner.Status(ctx, projectionName)
	require.NoError(t, err)
	require.Equal(t, head, st.Checkpoint)
	require.Equal(t, projections.StateRunning, st.State)
}

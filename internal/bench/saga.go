package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/saga"
)

// SagaConfig configures the saga scenario: Sagas order-like sagas of four
// steps, started by Concurrency writers at once, run end to end.
type SagaConfig struct {
	// Sagas is how many sagas each store runs. Defaults to 500, so both
	// stores and their baselines finish within 30s on a busy 2-core
	// machine.
	Sagas int
	// Warmup is how many sagas run, unmeasured, before the measured ones.
	// Defaults to a fifth of Sagas: the measured run then starts with
	// warm caches, pools and plans, as in a running application. On
	// PostgreSQL the tables are analyzed after the warm-up, standing in
	// for autovacuum: a new schema's plans are made on empty tables (the
	// id check of an append in a unit, for one, scans the events table
	// until statistics exist), which a running system outgrows within a
	// minute. Negative: none.
	Warmup int
	// Concurrency is how many writers start the sagas, and how many
	// writers the PostgreSQL baseline commits with. Defaults to 8.
	Concurrency int
	// Partitions splits the saga processor and each command handler.
	// Defaults to DefaultSagaPartitions (4). The client's default for sagas is 8; on a 2-core
	// machine fewer partitions contend less.
	Partitions int
	// CommitBatch bounds how many events the saga processor and the
	// command handlers apply in one unit. Defaults to 100.
	CommitBatch int
	// BaselineDuration is how long each baseline runs. Defaults to 2s.
	BaselineDuration time.Duration
	// Timeout bounds one store's run (warm-up and measured sagas); it only
	// stops a broken run. Defaults to 60s, or sagaTimeoutPerSaga per saga
	// run (Warmup + Sagas) when that is longer, so every accepted count
	// can finish on a slow machine.
	Timeout time.Duration
}

func (c *SagaConfig) withDefaults() SagaConfig {
	out := SagaConfig{}
	if c != nil {
		out = *c
	}
	if out.Sagas <= 0 {
		out.Sagas = 500
	}
	switch {
	case out.Warmup == 0:
		out.Warmup = out.Sagas / 5
	case out.Warmup < 0:
		out.Warmup = 0
	}
	if out.Concurrency <= 0 {
		out.Concurrency = 8
	}
	if out.Partitions <= 0 {
		out.Partitions = DefaultSagaPartitions
	}
	if out.CommitBatch <= 0 {
		out.CommitBatch = 100
	}
	if out.BaselineDuration <= 0 {
		out.BaselineDuration = 2 * time.Second
	}
	if out.Timeout <= 0 {
		out.Timeout = max(60*time.Second, time.Duration(out.Warmup+out.Sagas)*sagaTimeoutPerSaga)
	}
	return out
}

// SagaResult is one JSON line of the saga scenario.
type SagaResult struct {
	Scenario string `json:"scenario"`
	// Store is "memory" or "postgres".
	Store       string  `json:"store"`
	Sagas       int     `json:"sagas"`
	SagasPerSec float64 `json:"sagas_per_sec"`
	// StepsPerSec is SagasPerSec times the four steps of a saga.
	StepsPerSec float64 `json:"steps_per_sec"`
	// P50Ms and P99Ms are saga start (its first event committed) to
	// completion (its last step committed).
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	// Baseline names what the line is compared with: BaselineGoChannel in
	// memory, BaselineRawCommit on PostgreSQL.
	Baseline       string  `json:"baseline"`
	BaselinePerSec float64 `json:"baseline_per_sec"`
	// Ratio is SagasPerSec / BaselinePerSec.
	Ratio float64 `json:"ratio"`
	// Partitions is SagaConfig.Partitions.
	Partitions int `json:"partitions"`
	// RoundTripsPerSaga is, on PostgreSQL, the statements and batches the
	// measured run sent to the database (every process's share: saga
	// steps, command handlers, the read model, feed reads, leases)
	// divided by its sagas. Absent in memory.
	RoundTripsPerSaga float64 `json:"round_trips_per_saga,omitempty"`
}

// The saga scenario's baselines.
const (
	// BaselineGoChannel is the message rate of a Watermill router running a
	// no-op handler on gochannel.
	BaselineGoChannel = "gochannel_router"
	// BaselineRawCommit is the rate of single-row INSERT commits with
	// Concurrency writers.
	BaselineRawCommit = "raw_commit"
)

// sagaTimeoutPerSaga is the time per saga SagaConfig.Timeout's default
// allows: a rate of 50 sagas a second, a fraction of what PostgreSQL runs
// on a busy 2-core machine, so a run slower than that is broken, not slow.
const sagaTimeoutPerSaga = 20 * time.Millisecond

// DefaultSagaPartitions is SagaConfig.Partitions' default.
const DefaultSagaPartitions = 4

// StepsPerSaga is how many steps a saga of the scenario runs.
const StepsPerSaga = 4

// Saga runs the saga scenario in memory, then on PostgreSQL when pool is
// not nil (in schema, which must be migrated), and writes one JSON line per
// store to out.
func Saga(ctx context.Context, pool *pgxpool.Pool, schema string, cfg *SagaConfig, out io.Writer) ([]SagaResult, error) {
	res, err := runSaga(ctx, pool, schema, cfg, out)
	return res, interrupted(ctx, err)
}

func runSaga(ctx context.Context, pool *pgxpool.Pool, schema string, cfg *SagaConfig, out io.Writer) ([]SagaResult, error) {
	c := cfg.withDefaults()
	var results []SagaResult
	emit := func(r SagaResult) error {
		results = append(results, r)
		return writeLine(ctx, out, r)
	}
	base, err := goChannelRate(ctx, c)
	if err != nil {
		return results, fmt.Errorf("bench: saga: gochannel baseline: %w", err)
	}
	reg := sagaRegistry()
	mem, err := memstore.New(&memstore.Config{Registry: reg})
	if err != nil {
		return results, err
	}
	r, err := runSagas(ctx, mem, c, nil, nil)
	_ = mem.Close()
	if err != nil {
		return results, fmt.Errorf("bench: saga in memory: %w", err)
	}
	r.Store, r.Baseline, r.BaselinePerSec = "memory", BaselineGoChannel, round1(base)
	r.Ratio = ratio(r.SagasPerSec, r.BaselinePerSec)
	if err := emit(r); err != nil || pool == nil {
		return results, err
	}

	quiet := slog.New(slog.DiscardHandler)
	trips := &roundTrips{}
	counted, err := countingPool(ctx, pool, trips)
	if err != nil {
		return results, fmt.Errorf("bench: saga: %w", err)
	}
	defer counted.Close()
	pg, err := pgstore.New(ctx, counted, &pgstore.Config{Schema: schema, Registry: sagaRegistry(), Logger: quiet})
	if err != nil {
		return results, err
	}
	defer pg.Close()
	base, err = rawCommitRate(ctx, pool, schema, c)
	if err != nil {
		return results, fmt.Errorf("bench: saga: raw commit baseline: %w", err)
	}
	analyze := func(ctx context.Context) error {
		for _, t := range []string{"events", "rows", "checkpoints"} {
			if _, err := pool.Exec(ctx, "ANALYZE "+pgx.Identifier{schema, t}.Sanitize()); err != nil {
				return fmt.Errorf("analyze after the warm-up: %w", err)
			}
		}
		trips.start()
		return nil
	}
	var sent int64
	r, err = runSagas(ctx, pg, c, analyze, func() { sent = trips.stop() })
	if err != nil {
		return results, fmt.Errorf("bench: saga on PostgreSQL: %w", err)
	}
	r.RoundTripsPerSaga = round1(float64(sent) / float64(c.Sagas))
	r.Store, r.Baseline, r.BaselinePerSec = "postgres", BaselineRawCommit, round1(base)
	r.Ratio = ratio(r.SagasPerSec, r.BaselinePerSec)
	return results, emit(r)
}

// The scenario's events and commands.
type (
	benchOrderPlaced  struct{ ID string }
	benchStockHeld    struct{ ID string }
	benchPaid         struct{ ID string }
	benchShipped      struct{ ID string }
	benchHoldStock    struct{ ID string }
	benchTakePayment  struct{ ID string }
	benchShip         struct{ ID string }
	benchOrderSummary struct{ ID string }
)

const benchReadModel = "bench_orders"

func sagaRegistry() *events.Registry {
	reg := events.NewRegistry()
	events.Register[benchOrderPlaced](reg, "bench.order_placed")
	events.Register[benchStockHeld](reg, "bench.stock_held")
	events.Register[benchPaid](reg, "bench.paid")
	events.Register[benchShipped](reg, "bench.shipped")
	events.Register[benchHoldStock](reg, "bench.hold_stock")
	events.Register[benchTakePayment](reg, "bench.take_payment")
	events.Register[benchShip](reg, "bench.ship")
	return reg
}

type benchOrder struct {
	Steps int `json:"steps"`
}

// benchSaga is the order-like saga: placed → hold stock, held → take
// payment (gated on the read model), paid → ship, shipped → complete.
func benchSaga() *saga.Saga[benchOrder] {
	s := saga.New[benchOrder]("bench_order", nil)
	saga.StartOn(s, func(e benchOrderPlaced, _ events.Envelope) string { return e.ID },
		func(st *saga.Step[benchOrder], e benchOrderPlaced) error {
			st.State().Steps++
			return st.Send(benchHoldStock(e))
		})
	saga.On(s, func(e benchStockHeld, _ events.Envelope) string { return e.ID },
		func(st *saga.Step[benchOrder], e benchStockHeld) error {
			st.State().Steps++
			return st.Send(benchTakePayment(e))
		}, saga.Reads(benchReadModel))
	saga.On(s, func(e benchPaid, _ events.Envelope) string { return e.ID },
		func(st *saga.Step[benchOrder], e benchPaid) error {
			st.State().Steps++
			return st.Send(benchShip(e))
		})
	saga.On(s, func(e benchShipped, _ events.Envelope) string { return e.ID },
		func(st *saga.Step[benchOrder], _ benchShipped) error {
			st.State().Steps++
			st.Complete()
			return nil
		})
	return s
}

var benchCounter = events.Aggregate[int]{Apply: func(n int, _ any) (int, error) { return n + 1, nil }}

// sagaSystem is one store's application: the read model, the saga
// processor and the command handlers on one router.
type sagaSystem struct {
	store   saga.Store
	tracker *consistency.Tracker
	engine  *saga.Engine
	procs   []*feed.Processor
	router  *message.Router
	cancel  context.CancelFunc
	done    chan error

	mu sync.Mutex
	// prefix starts the ids of the phase being run (run).
	prefix   string
	started  map[string]time.Time
	finished map[string]time.Time
	left     atomic.Int64
	all      chan struct{}
}

// errSagaTimeout is the cause of a store's run ending at
// SagaConfig.Timeout, told apart from an interrupt.
var errSagaTimeout = errors.New("bench: saga: the store's run timed out")

// runSagas runs the scenario on one store: an unmeasured warm-up of
// Warmup sagas, then settle (nil in memory), then the measured run, then
// measured (nil in memory), before the system stops.
func runSagas(ctx context.Context, store saga.Store, c SagaConfig, settle func(context.Context) error, measured func()) (SagaResult, error) {
	sys, err := startSagaSystem(ctx, store, c)
	if err != nil {
		return SagaResult{}, err
	}
	defer func() { _ = sys.stop() }() // the figures are taken; a slow shutdown changes nothing
	ctx, cancel := context.WithTimeoutCause(ctx, c.Timeout, errSagaTimeout)
	defer cancel()
	if _, _, err := sys.run(ctx, "w", c.Warmup, c); err != nil {
		return SagaResult{}, fmt.Errorf("warm-up: %w", err)
	}
	if settle != nil {
		if err := settle(ctx); err != nil {
			return SagaResult{}, err
		}
	}
	elapsed, lat, err := sys.run(ctx, "o", c.Sagas, c)
	if measured != nil {
		measured()
	}
	if err != nil {
		return SagaResult{}, err
	}
	rate := float64(c.Sagas) / elapsed.Seconds()
	return SagaResult{
		Scenario: "saga", Sagas: c.Sagas, Partitions: c.Partitions, SagasPerSec: round1(rate), StepsPerSec: round1(rate * StepsPerSaga),
		P50Ms: ms(percentile(lat, 0.50)), P99Ms: ms(percentile(lat, 0.99)),
	}, nil
}

// run starts n sagas with ids prefix0, prefix1, ... from c.Concurrency
// writers and waits for all of them to complete. It returns the time from
// the first start to the last completion and each saga's latency, sorted.
func (s *sagaSystem) run(ctx context.Context, prefix string, n int, c SagaConfig) (time.Duration, []time.Duration, error) {
	if n <= 0 {
		return 0, nil, nil
	}
	s.mu.Lock()
	s.prefix = prefix
	s.started, s.finished, s.all = map[string]time.Time{}, map[string]time.Time{}, make(chan struct{})
	all := s.all
	s.mu.Unlock()
	s.left.Store(int64(n))
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, c.Concurrency)
	for w := range c.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += c.Concurrency {
				id := fmt.Sprintf("%s%d", prefix, i)
				_, err := s.store.Append(ctx, "bench_order-"+id, events.NoStream, events.Event{Data: benchOrderPlaced{ID: id}})
				if err != nil {
					errs <- err
					return
				}
				s.mu.Lock()
				s.started[id] = time.Now()
				s.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, nil, fmt.Errorf("start sagas: %w", err)
	}
	select {
	case <-all:
	case <-ctx.Done():
		if errors.Is(context.Cause(ctx), errSagaTimeout) {
			return 0, nil, fmt.Errorf("%d of %d sagas did not complete within %s", s.left.Load(), n, c.Timeout)
		}
		// Interrupted (Ctrl-C), not timed out: Saga says so.
		return 0, nil, fmt.Errorf("%d of %d sagas were still running: %w", s.left.Load(), n, ctx.Err())
	}
	elapsed := time.Since(t0)
	s.mu.Lock()
	defer s.mu.Unlock()
	lat := make([]time.Duration, 0, n)
	for id, end := range s.finished {
		// A saga can complete before its writer has noted its start.
		if start, ok := s.started[id]; ok {
			lat = append(lat, max(end.Sub(start), 0))
		}
	}
	slices.Sort(lat)
	return elapsed, lat, nil
}

func startSagaSystem(ctx context.Context, store saga.Store, c SagaConfig) (*sagaSystem, error) {
	quiet := slog.New(slog.DiscardHandler)
	sys := &sagaSystem{store: store}
	tracker, err := consistency.NewTracker(&consistency.TrackerConfig{
		Positions: store.Checkpoints(), Watcher: watcherOf(store), PushHealthy: store.PushHealthy, Logger: quiet,
	})
	if err != nil {
		return nil, err
	}
	if err := tracker.Start(ctx); err != nil {
		return nil, err
	}
	sys.tracker = tracker
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	if err != nil {
		return nil, err
	}
	sys.router = router
	sub := feed.SubscriberConfig{Logger: quiet}

	// The read model the gated step reads.
	rm, err := feed.NewProcessor(store, &feed.ProcessorConfig{
		Name: benchReadModel, Types: []string{"bench.order_placed"}, CommitBatch: c.CommitBatch, Subscriber: sub, Logger: quiet,
	}, func(ctx context.Context, env events.Envelope) error {
		eu, _ := events.UnitFromContext(ctx)
		u, ok := eu.(feed.Unit)
		if !ok {
			return errors.New("no unit")
		}
		b, _ := json.Marshal(benchOrderSummary{ID: env.StreamID})
		return u.Rows().Put(ctx, "bench", "orders", env.StreamID, b, env.Token)
	})
	if err != nil {
		return nil, err
	}
	if err := rm.AddHandlers(router); err != nil {
		return nil, err
	}

	csub := sub
	csub.CommitBatch = c.CommitBatch
	cp, err := command.NewProcessor(&command.ProcessorConfig{Store: store, Router: router, Subscriber: csub, Partitions: c.Partitions})
	if err != nil {
		return nil, err
	}
	err = cp.AddHandlers(
		command.Handle("hold-stock", store, benchCounter, func(c benchHoldStock) string { return "bench_stock-" + c.ID },
			func(_ context.Context, _ int, c benchHoldStock) ([]any, error) { return []any{benchStockHeld(c)}, nil }),
		command.Handle("take-payment", store, benchCounter, func(c benchTakePayment) string { return "bench_payment-" + c.ID },
			func(_ context.Context, _ int, c benchTakePayment) ([]any, error) { return []any{benchPaid(c)}, nil }),
		command.Handle("ship", store, benchCounter, func(c benchShip) string { return "bench_shipping-" + c.ID },
			func(_ context.Context, _ int, c benchShip) ([]any, error) { return []any{benchShipped(c)}, nil }),
	)
	if err != nil {
		return nil, err
	}

	eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{benchSaga()}, Tracker: tracker, Commands: cp, Logger: quiet})
	if err != nil {
		return nil, err
	}
	sys.engine = eng
	sp, err := feed.NewProcessor(store, &feed.ProcessorConfig{
		Name: "bench_sagas", Types: eng.Types(), Handles: eng.Handles(), Partitions: c.Partitions, PartitionKey: eng.PartitionKey(),
		CommitBatch: c.CommitBatch, Gate: eng.Gate, Waiter: tracker, Subscriber: sub, Logger: quiet,
	}, sys.handle)
	if err != nil {
		return nil, err
	}
	if err := sp.AddHandlers(router); err != nil {
		return nil, err
	}
	sys.procs = []*feed.Processor{rm, sp}
	if err := eng.Start(ctx); err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	sys.cancel = cancel
	sys.done = make(chan error, 1)
	go func() { sys.done <- router.Run(rctx) }()
	<-router.Running()
	// Measure from the moment every partition is held.
	err = poll(ctx, 30*time.Second, func() bool {
		for _, p := range sys.procs {
			for _, ps := range p.Status().Partitions {
				if ps.State != feed.PartitionActive {
					return false
				}
			}
		}
		return true
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("the processors never took their partitions: %w", err), sys.stop())
	}
	return sys, nil
}

// handle runs the engine and notes when a saga's last step commits.
func (s *sagaSystem) handle(ctx context.Context, env events.Envelope) error {
	if err := s.engine.Handle(ctx, env); err != nil {
		return err
	}
	if env.Type != "bench.shipped" {
		return nil
	}
	eu, ok := events.UnitFromContext(ctx)
	if !ok {
		return nil
	}
	id := env.Metadata.CorrelationID
	eu.AfterCommit(func() {
		now := time.Now()
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, seen := s.finished[id]; seen || !strings.HasPrefix(id, s.prefix) {
			return // a duplicate, or a late one of an earlier phase
		}
		s.finished[id] = now
		if s.left.Add(-1) == 0 {
			close(s.all)
		}
	})
	return nil
}

func (s *sagaSystem) stop() error {
	var errs []error
	if s.cancel != nil {
		s.cancel()
		errs = append(errs, s.router.Close(), <-s.done)
	}
	for _, p := range s.procs {
		errs = append(errs, p.Close())
	}
	if s.engine != nil {
		errs = append(errs, s.engine.Stop(context.Background()))
	}
	return errors.Join(append(errs, s.tracker.Stop(context.Background()))...)
}

func watcherOf(store saga.Store) feed.CheckpointWatcher {
	w, _ := store.(feed.CheckpointWatcher)
	return w
}

// goChannelRate is the message rate of a Watermill router running a no-op
// handler on gochannel, fed by Concurrency publishers. Each publisher waits
// for its message's ack (BlockPublishUntilSubscriberAck): unblocked
// publishers pile up a goroutine per message and measure gochannel's
// overload (a tenth of the rate or less), not its capacity.
func goChannelRate(ctx context.Context, c SagaConfig) (rate float64, err error) {
	ps := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 1024, BlockPublishUntilSubscriberAck: true}, watermill.NopLogger{})
	defer ps.Close()
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	if err != nil {
		return 0, err
	}
	var handled atomic.Int64
	router.AddConsumerHandler("noop", "bench", ps, func(*message.Message) error {
		handled.Add(1)
		return nil
	})
	// The router runs until the publishers have stopped: stopped first
	// (by an interrupt), it would leave them waiting for acks forever.
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- router.Run(rctx) }()
	defer func() { err = errors.Join(err, router.Close(), <-done) }()
	<-router.Running()
	payload := []byte(`{"id":"o1"}`)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range c.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := ps.Publish("bench", message.NewMessage(watermill.NewULID(), payload)); err != nil {
					return
				}
			}
		}()
	}
	measure := func() (float64, error) {
		if err := sleep(ctx, c.BaselineDuration/5); err != nil { // warm up, unmeasured
			return 0, err
		}
		n0, t0 := handled.Load(), time.Now()
		if err := sleep(ctx, c.BaselineDuration); err != nil {
			return 0, err
		}
		n1, t1 := handled.Load(), time.Now()
		return float64(n1-n0) / t1.Sub(t0).Seconds(), nil
	}
	rate, err = measure()
	close(stop)
	wg.Wait()
	if err != nil {
		return 0, err // Saga says whether it was interrupted
	}
	return rate, nil
}

// rawCommitRate is the rate of single-row INSERT commits by Concurrency
// writers, each on its own connection.
func rawCommitRate(ctx context.Context, pool *pgxpool.Pool, schema string, c SagaConfig) (float64, error) {
	table := pgx.Identifier{schema, "bench_commits"}.Sanitize()
	if _, err := pool.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+table+" (id bigserial PRIMARY KEY, payload jsonb NOT NULL)"); err != nil {
		return 0, err
	}
	defer func() { _, _ = pool.Exec(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+table) }()
	insert := "INSERT INTO " + table + " (payload) VALUES ($1)"
	var count atomic.Int64
	measuring := atomic.Bool{}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, c.Concurrency)
	for range c.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for wctx.Err() == nil {
				if _, err := pool.Exec(wctx, insert, `{"id":"o1"}`); err != nil {
					if wctx.Err() == nil {
						errs <- err
					}
					return
				}
				if measuring.Load() {
					count.Add(1)
				}
			}
		}()
	}
	slept := sleep(ctx, c.BaselineDuration/5) // warm up, unmeasured
	measuring.Store(true)
	t0 := time.Now()
	if slept == nil {
		slept = sleep(ctx, c.BaselineDuration)
	}
	measuring.Store(false)
	elapsed := time.Since(t0)
	cancel()
	wg.Wait()
	close(errs)
	if slept != nil {
		// Interrupted (Saga says so): the count is of a cut-short window.
		return 0, slept
	}
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(count.Load()) / elapsed.Seconds(), nil
}

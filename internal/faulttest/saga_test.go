package faulttest_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/faulttest"
	"github.com/converge-es/converge/migrations"
	"github.com/converge-es/converge/saga"
)

const (
	sagaWorkerRole = "saga-worker"
	checkoutSaga   = "fault_checkout"
	sagaPartitions = 4
	// reportExit is what a saga worker reports when its client stopped by
	// itself: the test fails on it, since nobody would notice otherwise
	// (RunChaos restarts whatever is not running).
	reportExit = "exit"
)

// The saga workload: OrderPlaced starts a checkout that sends ReserveStock;
// its handler appends StockReserved, on which the saga sends ChargeCard,
// whose handler appends CardCharged, which completes the saga. Every event
// names its order, so a command or effect doubled under a fresh id shows.
type (
	OrderPlaced struct {
		Seq     int    `json:"seq"`
		OrderID string `json:"order_id"`
	}
	ReserveStock struct {
		OrderID string `json:"order_id"`
	}
	StockReserved struct {
		OrderID string `json:"order_id"`
	}
	ChargeCard struct {
		OrderID string `json:"order_id"`
	}
	CardCharged struct {
		OrderID string `json:"order_id"`
	}
)

// Stored type names of the saga workload.
const (
	orderPlacedType   = "faultsaga.order_placed"
	reserveStockType  = "faultsaga.reserve_stock"
	stockReservedType = "faultsaga.stock_reserved"
	chargeCardType    = "faultsaga.charge_card"
	cardChargedType   = "faultsaga.card_charged"
)

// sagaTypes are the stored types of one checkout, in the order they happen.
var sagaTypes = []string{orderPlacedType, reserveStockType, stockReservedType, chargeCardType, cardChargedType}

func sagaRegistry() *events.Registry {
	reg := events.NewRegistry()
	events.Register[OrderPlaced](reg, orderPlacedType)
	events.Register[ReserveStock](reg, reserveStockType)
	events.Register[StockReserved](reg, stockReservedType)
	events.Register[ChargeCard](reg, chargeCardType)
	events.Register[CardCharged](reg, cardChargedType)
	events.Register[command.Rejected](reg, command.RejectedType)
	return reg
}

// checkoutConfig is the workers' application: the checkout saga and the
// two command handlers, partitioned over sagaPartitions by correlation.
func checkoutConfig(store events.Store, log *slog.Logger) *converge.Config {
	type state struct{ Reserved bool }
	flow := saga.New[state](checkoutSaga, nil)
	saga.StartOn(flow, func(e OrderPlaced, _ events.Envelope) string { return e.OrderID },
		func(s *saga.Step[state], e OrderPlaced) error {
			return s.Send(ReserveStock{OrderID: e.OrderID})
		})
	saga.On(flow, func(e StockReserved, _ events.Envelope) string { return e.OrderID },
		func(s *saga.Step[state], e StockReserved) error {
			s.State().Reserved = true
			return s.Send(ChargeCard(e))
		})
	saga.On(flow, func(e CardCharged, _ events.Envelope) string { return e.OrderID },
		func(s *saga.Step[state], _ CardCharged) error {
			s.Complete()
			return nil
		})

	// The aggregates always act, even when they have acted before: a
	// command delivered again under a fresh id would double its effect,
	// which the test must see rather than have hidden.
	count := events.Aggregate[int]{Apply: func(n int, _ any) (int, error) { return n + 1, nil }}
	reserve := command.Handle("fault-reserve-stock", store, count, func(c ReserveStock) string { return "stock-" + c.OrderID },
		func(_ context.Context, _ int, c ReserveStock) ([]any, error) {
			return []any{StockReserved(c)}, nil
		})
	charge := command.Handle("fault-charge-card", store, count, func(c ChargeCard) string { return "card-" + c.OrderID },
		func(_ context.Context, _ int, c ChargeCard) ([]any, error) {
			return []any{CardCharged(c)}, nil
		})
	return &converge.Config{
		Sagas:          []saga.Definition{flow},
		Commands:       []cqrs.CommandHandler{reserve, charge},
		SagaPartitions: sagaPartitions,
		Logger:         log,
	}
}

// sagaWorker runs the checkout client until SIGTERM. Its client is built
// again until one starts: the database may be down, and a client whose
// Start failed cannot be started again.
func sagaWorker(ctx context.Context, w *faulttest.Worker) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("pid", os.Getpid())
	ttl, err := time.ParseDuration(w.Env(envLeaseTTL))
	if err != nil {
		return fmt.Errorf("%s: %w", envLeaseTTL, err)
	}
	// sagaPartitions consumers, two command handlers, the engine's loops.
	store, closeStore, err := workerStore(ctx, w, 12, sagaRegistry(), log)
	if err != nil || store == nil {
		return err
	}
	defer closeStore()

	var client *converge.Client
	err = retry(ctx, func() error {
		cfg := checkoutConfig(store, log)
		cfg.Subscriber = feed.SubscriberConfig{LeaseTTL: ttl}
		c, err := converge.NewClient(store, cfg)
		if err != nil {
			return err
		}
		if err := c.Start(ctx); err != nil {
			log.Warn("faulttest: client start failed, retrying", "error", err)
			return err
		}
		client = c
		return nil
	})
	if err != nil {
		return nil
	}
	// The router stopping by itself would leave this process alive but
	// idle; say so, so the test fails instead of waiting.
	watch := time.NewTicker(200 * time.Millisecond)
	defer watch.Stop()
	for running := true; running; {
		select {
		case <-ctx.Done():
			running = false
		case <-watch.C:
			if client.Router().IsClosed() {
				w.Report(reportExit, "the router stopped by itself")
				_ = client.Stop(context.Background())
				return errors.New("the router stopped by itself")
			}
		}
	}
	stop, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return client.Stop(stop)
}

// TestSagasSurviveFaults runs three workers of the checkout saga and its
// command handlers while a writer places orders, kills a random worker
// every few seconds and restarts PostgreSQL twice, as
// TestProjectionsSurviveFaults does. Then it waits until every placed
// order's checkout has completed and checks that nothing was lost or
// doubled: every confirmed order is stored once, its checkout completed
// once, and each of its commands and their effects is stored exactly once.
func TestSagasSurviveFaults(t *testing.T) {
	t.Parallel()
	d := faultDuration(t)
	ctx := t.Context()
	ttl := ttlFor()
	cluster := faulttest.StartCluster(t, nil)
	url, err := cluster.CreateDatabase(ctx, "converge")
	require.NoError(t, err)
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = migrations.Migrate(ctx, pool, nil)
	require.NoError(t, err)
	store, err := pgstore.New(ctx, pool, &pgstore.Config{
		Registry:      sagaRegistry(),
		DisableListen: true, // this process only appends and checks
		Logger:        slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })

	var exitMu sync.Mutex
	var exits []faulttest.Report
	var workers []*faulttest.Process
	for i := range 3 {
		workers = append(workers, faulttest.StartProcess(t, &faulttest.ProcessConfig{
			Role: sagaWorkerRole,
			Name: "saga-worker-" + strconv.Itoa(i),
			Env:  []string{envDatabaseURL + "=" + url, envLeaseTTL + "=" + ttl.String(), envIdleTx + "=" + idleTx.String()},
			OnReport: func(r faulttest.Report) {
				if r.Kind == reportExit {
					exitMu.Lock()
					exits = append(exits, r)
					exitMu.Unlock()
				}
			},
		}))
	}

	// Each order is its own stream and its own correlation, so the orders
	// spread over the saga partitions. A slower pace than the projection
	// test's: each order causes four more events through three consumers.
	w, err := faulttest.StartWriter(ctx, &faulttest.WriterConfig{
		Store:       store,
		Concurrency: 1,
		Pace:        50 * time.Millisecond,
		Next: func(i int) (string, []events.Event) {
			id := "o" + strconv.Itoa(i)
			return "order-" + id, []events.Event{{
				Data:     OrderPlaced{Seq: i, OrderID: id},
				Metadata: events.Metadata{CorrelationID: id},
			}}
		},
	})
	require.NoError(t, err)

	down1, down2 := time.Second, 2*time.Second
	if d >= time.Minute {
		down1, down2 = 5*time.Second, 12*time.Second
	}
	rep, err := faulttest.RunChaos(ctx, &faulttest.ChaosConfig{
		Processes: workers,
		Cluster:   cluster,
		Restarts: []faulttest.ClusterRestart{
			{At: d / 3, Mode: faulttest.ShutdownFast, Down: down1},
			{At: 2 * d / 3, Mode: faulttest.ShutdownImmediate, Down: down2},
		},
		Duration: d,
		Logf:     t.Logf,
	})
	require.NoError(t, err)
	require.Len(t, rep.Restarts, 2, "both PostgreSQL restarts must have happened")
	res := w.Stop()
	t.Logf("writer: %d confirmed, %d unknown, %d retries; errors: %v", len(res.Confirmed), len(res.Unknown), res.Retries, res.Errors)
	require.NotEmpty(t, res.Confirmed)

	// The orders placed are the confirmed ones and the unknown ones that
	// turned out stored; CheckAppends sees only the OrderPlaced events, as
	// the sagas' commands and effects are no appends of the writer.
	apps, err := faulttest.CheckAppends(ctx, onlyTypes{store, orderPlacedType}, res, func(e events.Envelope) string {
		o, _ := events.DecodeAs[OrderPlaced](store.Registry(), e)
		return strconv.Itoa(o.Seq)
	})
	t.Logf("seed %d, %d kills; %s", rep.Seed, len(rep.Kills), apps)
	require.NotEmpty(t, rep.Kills, "no worker was killed (seed %d): the run tested no failover", rep.Seed)
	require.NoError(t, err)
	placed, err := storedOrders(ctx, store)
	require.NoError(t, err)
	for _, a := range res.Confirmed {
		require.Contains(t, placed, "o"+strconv.Itoa(a.Index))
	}

	// The workers keep running until every checkout has completed.
	op, err := saga.NewOperator(&saga.OperatorConfig{Source: store})
	require.NoError(t, err)
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second+ttl)
	defer cancel()
	infos, err := awaitCompleted(wctx, op, placed, workers)
	require.NoError(t, err, "seed %d", rep.Seed)
	stop, cancelStop := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancelStop()
	for _, p := range workers {
		require.NoError(t, p.Stop(stop))
	}
	exitMu.Lock()
	require.Empty(t, exits, "a worker's client stopped by itself")
	exitMu.Unlock()

	// 1. Every placed order's checkout completed, once: one instance, one
	// completion and one step per message in its history.
	var problems []string
	for _, id := range slices.Sorted(maps.Keys(placed)) {
		if in := infos[id]; in.Status != saga.StatusCompleted || in.Steps != 3 {
			problems = append(problems, fmt.Sprintf("order %s: checkout %s after %d steps, want completed after 3", id, in.Status, in.Steps))
			continue
		}
		tl, err := op.Show(ctx, checkoutSaga, id)
		require.NoError(t, err)
		kinds := map[string]int{}
		for _, h := range tl.History {
			kinds[h.Kind]++
		}
		if kinds[saga.KindCompleted] != 1 || kinds[saga.KindCommandSent] != 2 || kinds[saga.KindStarted] != 1 {
			problems = append(problems, fmt.Sprintf("order %s: history has %d started, %d command_sent, %d completed; want 1, 2, 1", id,
				kinds[saga.KindStarted], kinds[saga.KindCommandSent], kinds[saga.KindCompleted]))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(infos)) {
		if _, ok := placed[id]; !ok {
			problems = append(problems, fmt.Sprintf("instance %s has no order", id))
		}
	}
	require.NoError(t, problemList("checkouts", problems), "seed %d", rep.Seed)

	// 2 and 3. Every command and every effect is stored exactly once per
	// order, in its stream, on the order's correlation.
	require.NoError(t, checkCheckoutEvents(ctx, store, placed), "seed %d", rep.Seed)
	t.Logf("%d orders placed, every checkout completed once with each command and effect stored once", len(placed))
}

// awaitCompleted polls the instances until every order in placed has a
// completed checkout, and returns them by id. A failed or cancelled
// instance ends the wait at once, as does a worker that is not running
// (all were restarted after the chaos; none may exit by itself).
func awaitCompleted(ctx context.Context, op *saga.Operator, placed map[string]bool, workers []*faulttest.Process) (map[string]saga.Info, error) {
	poll := time.NewTicker(200 * time.Millisecond)
	defer poll.Stop()
	for {
		list, err := op.List(ctx, saga.Filter{Saga: checkoutSaga, Limit: 1 << 30})
		byID := map[string]saga.Info{}
		done := 0
		var ended []string
		for _, in := range list {
			byID[in.ID] = in
			switch in.Status {
			case saga.StatusCompleted:
				if placed[in.ID] {
					done++
				}
			case saga.StatusFailed, saga.StatusCancelled:
				ended = append(ended, fmt.Sprintf("%s %s: %s", in.ID, in.Status, in.Reason))
			}
		}
		switch {
		case len(ended) > 0:
			return byID, fmt.Errorf("%d checkouts ended without completing: %s", len(ended), strings.Join(ended[:min(len(ended), 10)], "; "))
		case err == nil && done == len(placed):
			return byID, nil
		}
		for _, p := range workers {
			if !p.Running() {
				return byID, fmt.Errorf("%s is not running while checkouts are pending", p.Name())
			}
		}
		select {
		case <-poll.C:
		case <-ctx.Done():
			return byID, fmt.Errorf("%d of %d checkouts completed (%d instances): %w", done, len(placed), len(list), errors.Join(ctx.Err(), err))
		}
	}
}

// storedOrders returns the ids of the orders placed in store.
func storedOrders(ctx context.Context, store *pgstore.Store) (map[string]bool, error) {
	placed := map[string]bool{}
	err := readAll(ctx, store, func(e events.Envelope) error {
		if e.Type != orderPlacedType {
			return nil
		}
		o, err := events.DecodeAs[OrderPlaced](store.Registry(), e)
		placed[o.OrderID] = true
		return err
	})
	return placed, err
}

// checkCheckoutEvents checks that each placed order has exactly one event
// of every type of a checkout, by logical key (type and order, not event
// id, so a command sent again under a fresh id shows), the commands in
// their command.StreamFor stream and every one of them on the order's
// correlation; and that nothing else is stored.
func checkCheckoutEvents(ctx context.Context, store *pgstore.Store, placed map[string]bool) error {
	type key struct{ typ, order string }
	seen := map[key]int{}
	var problems []string
	err := readAll(ctx, store, func(e events.Envelope) error {
		v, err := store.Registry().Decode(e)
		if err != nil {
			return err
		}
		var order, stream string
		switch x := v.(type) {
		case OrderPlaced:
			order, stream = x.OrderID, "order-"+x.OrderID
		case ReserveStock:
			order, stream = x.OrderID, command.StreamFor(reserveStockType, x.OrderID)
		case StockReserved:
			order, stream = x.OrderID, "stock-"+x.OrderID
		case ChargeCard:
			order, stream = x.OrderID, command.StreamFor(chargeCardType, x.OrderID)
		case CardCharged:
			order, stream = x.OrderID, "card-"+x.OrderID
		default:
			problems = append(problems, fmt.Sprintf("unexpected %s event %s in %s: %+v", e.Type, e.ID, e.StreamID, v))
			return nil
		}
		seen[key{e.Type, order}]++
		if e.StreamID != stream || e.Metadata.CorrelationID != order {
			problems = append(problems, fmt.Sprintf("%s of order %s is in stream %s with correlation %q, want %s and %q",
				e.Type, order, e.StreamID, e.Metadata.CorrelationID, stream, order))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range slices.Sorted(maps.Keys(placed)) {
		for _, typ := range sagaTypes {
			if n := seen[key{typ, id}]; n != 1 {
				problems = append(problems, fmt.Sprintf("order %s: %d %s, want 1", id, n, typ))
			}
		}
	}
	for k, n := range seen {
		if !placed[k.order] {
			problems = append(problems, fmt.Sprintf("%d %s of order %s, which was never placed", n, k.typ, k.order))
		}
	}
	slices.Sort(problems)
	return problemList("the checkouts' events", problems)
}

// problemList returns an error listing the first problems, or nil.
func problemList(what string, problems []string) error {
	if len(problems) == 0 {
		return nil
	}
	more := ""
	if len(problems) > 20 {
		more = fmt.Sprintf("\n  … and %d more", len(problems)-20)
	}
	return fmt.Errorf("%d problem(s) with %s:\n  %s%s", len(problems), what, strings.Join(problems[:min(len(problems), 20)], "\n  "), more)
}

// readAll calls f with every event of store, in order.
func readAll(ctx context.Context, store events.Store, f func(events.Envelope) error) error {
	var after events.Token
	for {
		page, err := store.ReadAll(ctx, after, 1000)
		if err != nil || len(page) == 0 {
			return err
		}
		for _, e := range page {
			if err := f(e); err != nil {
				return err
			}
		}
		after = page[len(page)-1].Token
	}
}

// onlyTypes is a store whose ReadAll returns only events of one type, so
// CheckAppends can check the writer's appends among the events the sagas
// caused.
type onlyTypes struct {
	events.Store
	typ string
}

func (s onlyTypes) ReadAll(ctx context.Context, after events.Token, limit int) ([]events.Envelope, error) {
	for {
		page, err := s.Store.ReadAll(ctx, after, limit)
		if err != nil || len(page) == 0 {
			return page, err
		}
		var out []events.Envelope
		for _, e := range page {
			if e.Type == s.typ {
				out = append(out, e)
			}
		}
		if len(out) > 0 {
			return out, nil
		}
		after = page[len(page)-1].Token
	}
}

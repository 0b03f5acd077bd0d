package converge

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
	"github.com/converge-es/converge/saga"
)

// Store is what a Client runs on: a *memstore.Store or a *pgstore.Store.
// Both implement every part of it, so an application passes either and
// never branches on which.
type Store interface {
	events.Store
	feed.Source
	feed.CheckpointWatcher
	feed.Inspector
}

// Client runs an application's read models, sagas and command handlers on
// one store: the consistency.Tracker (fed by the store's checkpoint
// watcher), the projections Runner, the saga Engine on a partitioned
// feed.Processor gated by the Tracker, the command processor, and the lag
// monitor, with one Start/Stop contract.
type Client struct {
	store    Store
	cfg      Config
	log      *slog.Logger
	tracker  *consistency.Tracker
	catalog  *consistency.Catalog
	runner   *projections.Runner
	engine   *saga.Engine
	sagaProc *feed.Processor
	gate     *gateWaiter
	commands *command.Processor
	monitor  *lag.Monitor
	router   *message.Router

	// mu guards state and startCancel only, and is never held while the
	// parts start or stop: a Stop must get in during a slow Start (a
	// SIGTERM during start-up) and cancel it.
	mu    sync.Mutex
	state int
	// startCancel cancels the Start in progress (stateStarting).
	startCancel context.CancelCauseFunc
	// busy is held (a value sent) by the Start in progress, the clean-up
	// of a Start that failed or was stopped, and each Stop, around the
	// starting and stopping of the parts: they take turns, and a Stop
	// waits for its turn no longer than its ctx. routerErr and runCancel
	// are used under it.
	busy      chan struct{}
	routerErr chan error
	runCancel context.CancelFunc
	// unregister takes the client's metrics off Config.Registerer once:
	// Unregister matches collectors by their descriptions, so doing it
	// again (a second Stop) would take a newer client's metrics of the
	// same names off.
	unregister sync.Once
}

const (
	stateNew = iota
	stateStarting
	stateRunning
	stateStopped
)

// NewClient checks cfg and builds every part; nothing runs until Start.
// The store's events.Registry must hold every event and command type the
// definitions use. When it returns an error it leaves no metric
// registered on Config.Registerer and Config.Router as it was (no
// handler added), so a fixed configuration can be built on the same
// ones.
func NewClient(store Store, cfg *Config) (_ *Client, err error) {
	if store == nil {
		return nil, errors.New("converge: NewClient needs a store (a *memstore.Store or a *pgstore.Store)")
	}
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	cl := &Client{
		store: store, cfg: c, log: c.Logger.With("component", "converge.Client"), catalog: &consistency.Catalog{},
		busy: make(chan struct{}, 1),
	}
	defer func() {
		if err != nil {
			cl.release()
		}
	}()
	cl.tracker, err = consistency.NewTracker(&consistency.TrackerConfig{
		Positions:   store.Checkpoints(),
		Watcher:     store,
		PushHealthy: store.PushHealthy,
		Counter:     store,
		Logger:      c.Logger,
		Clock:       c.Clock,
	})
	if err != nil {
		return nil, fmt.Errorf("converge: %w", err)
	}
	if len(c.Projections) > 0 {
		sub := c.Subscriber
		cl.runner, err = projections.NewRunner(&projections.RunnerConfig{
			Source:      store,
			Projections: c.Projections,
			Tracker:     cl.tracker,
			Catalog:     cl.catalog,
			OnUpdate:    c.OnProjectionUpdate,
			Middleware:  c.ProjectionMiddleware,
			CommitBatch: c.CommitBatch,
			Subscriber:  &sub,
			Logger:      c.Logger,
			Clock:       c.Clock,
		})
		if err != nil {
			return nil, fmt.Errorf("converge: %w", err)
		}
	}
	cl.router = c.Router
	if cl.router == nil {
		cl.router, err = message.NewRouter(message.RouterConfig{CloseTimeout: DefaultCloseTimeout}, routerLogger(c.Logger))
		if err != nil {
			return nil, fmt.Errorf("converge: router: %w", err)
		}
		cl.router.AddMiddleware(middleware.Recoverer)
	}
	// Watermill's router cannot take a handler off: one left on the
	// caller's router by a refused client would refuse the fixed
	// configuration's handler of the same name, and would consume its
	// commands outside any client if the caller ran the router. So every
	// part is built and every name checked first, and the handlers are
	// mounted last (mount).
	var consumers []command.Consumer
	if len(c.Commands) > 0 || len(c.Sagas) > 0 {
		sub := c.Subscriber
		sub.CommitBatch = c.CommitBatch
		cl.commands, err = command.NewProcessor(&command.ProcessorConfig{
			Store: store, Router: cl.router, Subscriber: sub, Logger: routerLogger(c.Logger),
		})
		if err != nil {
			return nil, fmt.Errorf("converge: %w", err)
		}
		// Plan checks the command handlers' names against each other and
		// the router's handlers.
		consumers, err = cl.commands.Plan(c.Commands...)
		if err != nil {
			return nil, fmt.Errorf("converge: %w", err)
		}
	}
	if err := c.checkConsumerNames(consumers); err != nil {
		return nil, err
	}
	if len(c.Sagas) > 0 {
		if err := c.checkSagaHandlerNames(cl.router.Handlers()); err != nil {
			return nil, err
		}
		if err := cl.newSagas(); err != nil {
			return nil, err
		}
	}
	targets := make([]lag.Target, 0, len(c.Projections))
	for _, p := range c.Projections {
		rm := p.ReadModel()
		// A projection in partitions checkpoints under one name per
		// partition: it is as far as the slowest.
		targets = append(targets, lag.Target{Name: rm.Name, SLA: rm.SLA, Class: string(rm.Class), Checkpoints: p.CheckpointNames()})
	}
	if cl.sagaProc != nil {
		// The saga processor is watched too: a partition halted on an
		// event (or no process running it) shows as lag, in the
		// monitor's reports, metrics and health checks built on them,
		// as a halted read model does. Parked steps do not hold it back.
		targets = append(targets, lag.Target{Name: c.SagaProcessor, SLA: SagaLagSLA, Class: "saga", Checkpoints: cl.sagaProc.CheckpointNames()})
	}
	// A command handler retries a failing command until it succeeds,
	// and its consumer delivers nothing else meanwhile: the sagas
	// waiting on its results stall without failing. Only lag shows it.
	for _, con := range consumers {
		targets = append(targets, lag.Target{Name: con.Name, SLA: CommandLagSLA, Class: "command", Checkpoints: con.Checkpoints})
	}
	// The lag monitor registers its metrics all or none: refused, it
	// leaves none; built, release unregisters them if mounting fails.
	if len(targets) > 0 {
		cl.monitor, err = lag.NewMonitor(store, &lag.Config{
			Projections: targets, DefaultSLA: c.LagSLA, Interval: c.LagInterval,
			Registerer: c.Registerer, Logger: c.Logger, Clock: c.Clock,
			// A holder renews its lease, and so beats its heart, every
			// third of the lease TTL: with a TTL raised past the monitor's
			// default, a live consumer that is behind would read as
			// stalled between two renewals.
			StaleHeartbeat: max(c.Subscriber.LeaseTTL, lag.DefaultStaleHeartbeat),
		})
		if err != nil {
			return nil, fmt.Errorf("converge: %w", err)
		}
	}
	if err := cl.mount(); err != nil {
		return nil, err
	}
	return cl, nil
}

// mount puts the saga processor's and the command handlers' handlers on
// the router, once everything that can refuse the configuration has
// accepted it.
//
// The saga processor goes first: its AddHandlers reads the store (the
// partition key it last ran with), which can fail, and adds none of its
// handlers when it does. The command handlers' AddHandlers, their names
// and subscriber configuration checked by Plan and NewProcessor, has
// nothing left to fail on; were it to fail all the same, the saga
// processor's handlers would stay on the router (release closes the
// processor, so they deliver nothing).
func (cl *Client) mount() error {
	if cl.sagaProc != nil {
		if err := cl.sagaProc.AddHandlers(cl.router); err != nil {
			return fmt.Errorf("converge: saga processor (Config.SagaProcessor): %w", err)
		}
		// Waited on by its name, the processor is as far as the lowest
		// of its partitions.
		cl.tracker.Group(cl.cfg.SagaProcessor, cl.sagaProc.CheckpointNames()...)
	}
	if cl.commands != nil && len(cl.cfg.Commands) > 0 {
		if err := cl.commands.AddHandlers(cl.cfg.Commands...); err != nil {
			return fmt.Errorf("converge: %w", err)
		}
	}
	return nil
}

// release undoes what a NewClient that fails had built: it unregisters
// the saga engine's and the lag monitor's metrics from
// Config.Registerer (each registered all of its metrics, or it would not
// exist) and closes the saga processor, which was never run.
func (cl *Client) release() {
	if cl.sagaProc != nil {
		_ = cl.sagaProc.Close()
	}
	cl.unregisterMetrics()
}

// unregisterMetrics takes the saga engine's and the lag monitor's metrics
// off Config.Registerer, for a client that failed to build or has
// stopped: a new client (ErrStopped says to make one) registers its own
// there.
func (cl *Client) unregisterMetrics() {
	cl.unregister.Do(cl.unregisterMetricsOnce)
}

func (cl *Client) unregisterMetricsOnce() {
	if cl.cfg.Registerer == nil {
		return
	}
	var cs []prometheus.Collector
	if cl.engine != nil {
		cs = append(cs, cl.engine.Metrics().Collectors()...)
	}
	if cl.monitor != nil {
		cs = append(cs, cl.monitor.Collectors()...)
	}
	for _, c := range cs {
		cl.cfg.Registerer.Unregister(c)
	}
}

// newSagas builds the engine and the processor, partitioned by
// correlation and gated by the Tracker, that mount mounts it on.
func (cl *Client) newSagas() error {
	c := cl.cfg
	var err error
	var catalog saga.CommandCatalog
	if cl.commands != nil && len(c.Commands) > 0 {
		// Asked as steps run, once mount has added the handlers.
		catalog = cl.commands
	}
	cl.engine, err = saga.NewEngine(&saga.EngineConfig{
		Store: cl.store, Sagas: c.Sagas, Tracker: cl.tracker, Commands: catalog,
		Clock: c.Clock, GateTimeout: c.GateTimeout, Retention: c.SagaRetention, Registerer: c.Registerer, Logger: c.Logger,
		// The driver runs where the sagas' processor delivers: a process
		// standing by for a newer build leaves its parked steps alone.
		// (The processor is made below, before anything starts.)
		Assigned: func() (bool, <-chan struct{}) { return cl.sagaProc.IsAssigned() },
	})
	if err != nil {
		return fmt.Errorf("converge: %w", err)
	}
	cl.gate = &gateWaiter{t: cl.tracker}
	cl.sagaProc, err = feed.NewProcessor(cl.store, &feed.ProcessorConfig{
		Name:         c.SagaProcessor,
		Types:        cl.engine.Types(),
		Handles:      cl.engine.Handles(),
		Partitions:   c.SagaPartitions,
		PartitionKey: cl.engine.PartitionKey(),
		Gate:         cl.engine.Gate,
		Waiter:       cl.gate,
		GateTimeout:  c.GateTimeout,
		CommitBatch:  c.CommitBatch,
		Subscriber:   c.Subscriber,
		// The partitions' subscriber lines go to Subscriber.Logger (it
		// defaults to Logger), the processor's own lines here.
		Logger: c.Logger,
	}, cl.engine.Handle)
	if err != nil {
		// Config.Subscriber and the other settings it takes were checked
		// by Config.validate: what is left is the processor's own name.
		return fmt.Errorf("converge: saga processor (Config.SagaProcessor): %w", err)
	}
	return nil
}

// routerLogger maps Watermill's per-message Info lines to Debug: the
// client's components log what matters.
func routerLogger(l *slog.Logger) watermill.LoggerAdapter {
	return watermill.NewSlogLoggerWithLevelMapping(l.With("component", "converge.router"), map[slog.Level]slog.Level{
		slog.LevelInfo:  slog.LevelDebug,
		slog.LevelError: slog.LevelWarn,
	})
}

// Start starts the Tracker, the projections, the saga engine's loops, the
// router and the lag monitor, and returns once the router runs. While
// processes of another build run the same processors (a rolling deploy),
// it also waits, up to two lease TTLs, until this process delivers the
// partitions assigned to it (feed.Processor.AwaitTakeover), so an event
// only this build handles, appended once Start returns, is not filtered
// out by an older process. It does not block beyond that; ctx bounds the
// start only (the client runs until Stop). A
// failed Start stops what it started; the client cannot be started again.
// A Stop called during the start ends it: Start stops what it started and
// returns ErrStopped.
func (cl *Client) Start(ctx context.Context) error {
	cl.mu.Lock()
	switch cl.state {
	case stateStarting, stateRunning:
		cl.mu.Unlock()
		return ErrAlreadyStarted
	case stateStopped:
		cl.mu.Unlock()
		return ErrStopped
	}
	cl.state = stateStarting
	startCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	cl.startCancel = cancel
	cl.busy <- struct{}{} // free: nothing else takes it before the first Start
	cl.mu.Unlock()
	defer func() { <-cl.busy }()

	err := cl.start(startCtx)
	cl.mu.Lock()
	stopped := cl.state == stateStopped // by a Stop during the start
	cl.startCancel = nil
	if err == nil && !stopped {
		cl.state = stateRunning
		cl.mu.Unlock()
		return nil
	}
	cl.state = stateStopped
	cl.mu.Unlock()
	if stopped && (err == nil || ctx.Err() == nil) {
		// Cancelled by Stop, or started just before it: neither the
		// caller's failure nor a running client.
		err = fmt.Errorf("converge: Stop was called during Start: %w", ErrStopped)
	}
	// Stopped for good: the new client ErrStopped asks for registers its
	// metrics where this one's were.
	defer cl.unregisterMetrics()
	if serr := cl.stopParts(context.WithoutCancel(ctx)); serr != nil {
		return errors.Join(err, serr)
	}
	return err
}

func (cl *Client) start(ctx context.Context) error {
	if err := cl.tracker.Start(ctx); err != nil {
		return fmt.Errorf("converge: start tracker: %w", err)
	}
	if cl.runner != nil {
		if err := cl.runner.Start(ctx); err != nil {
			return fmt.Errorf("converge: start projections: %w", err)
		}
	}
	if cl.engine != nil {
		if err := cl.engine.Start(ctx); err != nil {
			return fmt.Errorf("converge: start sagas: %w", err)
		}
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	cl.runCancel = cancel
	cl.routerErr = make(chan error, 1)
	go func() { cl.routerErr <- cl.router.Run(runCtx) }()
	select {
	case <-cl.router.Running():
	case err := <-cl.routerErr:
		// Reported here, so not again by the Stop that follows.
		cl.routerErr <- nil
		return fmt.Errorf("converge: the router stopped while starting: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}
	if cl.monitor != nil {
		if err := cl.monitor.Start(context.WithoutCancel(ctx)); err != nil {
			return fmt.Errorf("converge: start lag monitor: %w", err)
		}
	}
	cl.awaitTakeover(ctx)
	return nil
}

// awaitTakeover waits, while processes of another build run the client's
// processors (a rolling deploy), until this process delivers the
// partitions assigned to it, so that an event only this build handles,
// appended once Start returns, is not filtered out by an older process
// (feed.Processor.AwaitTakeover). It returns at once when no other build
// runs, and gives up, with a warning, after two lease TTLs: a partition
// whose old holder died moves only when its lease expires.
func (cl *Client) awaitTakeover(ctx context.Context) {
	ttl := cmp.Or(cl.cfg.Subscriber.LeaseTTL, feed.DefaultLeaseTTL)
	wctx, cancel := context.WithTimeout(ctx, 2*ttl)
	defer cancel()
	var err error
	if cl.runner != nil {
		err = cl.runner.AwaitTakeover(wctx)
	}
	if err == nil && cl.sagaProc != nil {
		err = cl.sagaProc.AwaitTakeover(wctx)
	}
	// Quiet only for a Stop during the start (it cancels ctx): a caller's
	// deadline that cut the wait short leaves the hazard, and says so.
	if err != nil && !errors.Is(context.Cause(ctx), ErrStopped) {
		cl.log.Warn("converge: started before taking the partitions over from another build's processes; an event only this build handles, appended now, may be skipped by them", "error", err)
	}
}

// Stop drains and stops everything: the lag monitor, then the router
// (a message still in a handler's hands is given up: its unit rolls
// back and the next holder delivers it again; the sagas' and command
// handlers' leases are released and the process leaves their membership
// groups, announcing it, so another process takes their partitions over
// at once, not after a lease TTL), then the saga engine's loops, the projections
// (releasing their leases) and the Tracker. It returns when all of it has stopped or
// ctx is done. Stop may be called more than once, and without Start. It
// takes the client's metrics off Config.Registerer, so a new client can
// register there. A Stop during a Start cancels the start, which stops
// what it started, and waits for it as long as ctx allows. A ctx already
// done (a deferred Stop with the signal context that ended the program)
// still stops a running client: every part is told to stop (one that does
// not end at once finishes after Stop returns, whose error says so), and
// the metrics leave the Registerer.
func (cl *Client) Stop(ctx context.Context) error {
	cl.mu.Lock()
	switch cl.state {
	case stateNew:
		cl.state = stateStopped
		cl.mu.Unlock()
		cl.unregisterMetrics()
		return nil
	case stateStarting:
		cl.startCancel(ErrStopped)
	}
	cl.state = stateStopped
	cl.mu.Unlock()
	// Wait for the start (and its clean-up) or another Stop to finish.
	select {
	case cl.busy <- struct{}{}: // free: take it even when ctx is done
	default:
		select {
		case cl.busy <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("converge: stop: the client is still starting or stopping: %w", ctx.Err())
		}
	}
	defer func() { <-cl.busy }()
	defer cl.unregisterMetrics()
	return cl.stopParts(ctx)
}

// stopParts stops every part, in the order Stop describes. The caller
// holds busy.
func (cl *Client) stopParts(ctx context.Context) error {
	var errs []error
	if cl.monitor != nil {
		errs = append(errs, cl.monitor.Stop(ctx))
	}
	if cl.routerErr != nil {
		errs = append(errs, cl.stopRouter(ctx))
	}
	if cl.sagaProc != nil {
		errs = append(errs, cl.sagaProc.Close())
	}
	if cl.engine != nil {
		errs = append(errs, cl.engine.Stop(ctx))
	}
	if cl.runner != nil {
		errs = append(errs, cl.runner.Stop(ctx))
	}
	errs = append(errs, cl.tracker.Stop(ctx))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("converge: stop: %w", err)
	}
	return nil
}

// stopRouter ends the router's Run. The caller holds busy.
func (cl *Client) stopRouter(ctx context.Context) error {
	if !cl.router.IsRunning() {
		// Run is still starting its handlers (a subscriber blocked in
		// Subscribe, its broker unreachable): Close would wait for it,
		// and it waits for its context. Cancel that, then see whether Run
		// gave up (it returns) or got through (it runs, and is closed).
		cl.runCancel()
		select {
		case err := <-cl.routerErr:
			if errors.Is(err, context.Canceled) {
				err = nil // the cancellation asked for here
			}
			cl.routerErr <- err
			return err
		case <-cl.router.Running():
		case <-ctx.Done():
			return fmt.Errorf("the router's Run did not return: %w", ctx.Err())
		}
	}
	var errs []error
	select {
	case err := <-cl.routerErr:
		// Run has returned: it failed before its handlers ran (a
		// plugin, a Subscribe), or Close was called already. Close
		// would then wait the router's CloseTimeout (30s by default)
		// for handlers that never started, and report a timeout.
		cl.routerErr <- err
		errs = append(errs, err)
	default:
		// Close waits for handlers in flight up to the router's
		// CloseTimeout, whatever ctx says: wait for it here instead,
		// and past ctx cancel the handlers' context, so a handler
		// that honours it ends and the close finishes behind us.
		closed := make(chan error, 1)
		go func() { closed <- cl.router.Close() }()
		select {
		case err := <-closed:
			errs = append(errs, err)
			select {
			case err := <-cl.routerErr:
				cl.routerErr <- err
				errs = append(errs, err)
			case <-ctx.Done():
				errs = append(errs, fmt.Errorf("the router's Run did not return: %w", ctx.Err()))
			}
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("handlers still running (the router closes behind Stop): %w", ctx.Err()))
		}
	}
	cl.runCancel()
	return errors.Join(errs...)
}

// Store returns the store the client runs on.
func (cl *Client) Store() Store { return cl.store }

// Tracker returns the consistency.Tracker that follows every read model
// (by projection name) and the saga processor (by Config.SagaProcessor).
// Wait on it with a write's token before reading.
func (cl *Client) Tracker() *consistency.Tracker { return cl.tracker }

// Catalog returns every projection's declared class and SLA.
func (cl *Client) Catalog() *consistency.Catalog { return cl.catalog }

// Projections returns the projections Runner (views, status, resume,
// rebuild), or nil when Config.Projections is empty.
func (cl *Client) Projections() *projections.Runner { return cl.runner }

// Sagas returns the saga Engine (List, Show, Retry, Cancel, Metrics), or
// nil when Config.Sagas is empty.
func (cl *Client) Sagas() *saga.Engine { return cl.engine }

// SagaProcessor returns the processor the sagas run on (status,
// partitions), or nil when Config.Sagas is empty.
func (cl *Client) SagaProcessor() *feed.Processor { return cl.sagaProc }

// Commands returns the command processor, or nil when there are neither
// commands nor sagas.
func (cl *Client) Commands() *command.Processor { return cl.commands }

// Lag returns the lag monitor, or nil when there are no projections,
// sagas or command handlers. It watches every projection, the saga
// processor (under Config.SagaProcessor, with SagaLagSLA) and each command
// handler's consumer (under "command.<handler name>", with CommandLagSLA).
func (cl *Client) Lag() *lag.Monitor { return cl.monitor }

// Router returns the Watermill router the sagas and command handlers run
// on.
func (cl *Client) Router() *message.Router { return cl.router }

// Appender returns the events.Store to append through: it applies strong
// projections in the append's own unit of work, so a read right after the
// append sees them. It is the store itself when there are no projections.
// It works once the client has started.
func (cl *Client) Appender() events.Store {
	if cl.runner == nil {
		return cl.store
	}
	return cl.runner.Appender()
}

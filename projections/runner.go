package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/signal"
)

// keepaliveHandler is the name of a handler that never receives anything.
// Watermill closes a router whose handlers have all stopped; this one keeps
// the router open while a projection's consumer is stopped for a Reset.
const keepaliveHandler = "projections.keepalive"

type runState int

const (
	stateNew runState = iota
	stateRunning
	stateStopping
)

// Runner runs projections: one Watermill router, one handler per
// projection fed by its own feed.Subscriber (consumer name = projection
// name), plus a second handler per projection while it is being rebuilt.
// It also serves readers (View), strong appends (Appender) and operations
// (Status, Resume, Rebuild, Reset, DeadLetters).
//
// Several processes may run the same projections: per projection one
// consumer delivers and the others stand by (feed leases).
type Runner struct {
	cfg    RunnerConfig
	be     backend
	mem    *memBackend // set in memory
	pg     *pgBackend  // set on PostgreSQL
	projs  map[string]*compiled
	list   []*compiled // by name
	strong []*compiled // by name
	log    *slog.Logger

	changed signal.Broadcast // a generation's state or a rebuild moved

	mu         sync.Mutex
	state      runState
	router     *message.Router
	runCtx     context.Context
	cancelRun  context.CancelFunc
	consumers  map[string]*consumer
	routerDone chan struct{}
	stopped    chan struct{}
	stopOnce   sync.Once
	bg         sync.WaitGroup
}

// NewRunner checks cfg, binds the projections' handlers to the store's
// events.Registry and fills cfg.Catalog. Nothing runs until Start, which
// also registers the projections in the store: until a runner has started
// once, Appender and Status fail with ErrNotRegistered and views read
// nothing.
func NewRunner(cfg *RunnerConfig) (*Runner, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	r := &Runner{
		cfg:       c,
		projs:     map[string]*compiled{},
		log:       c.Logger.With("component", "projections.Runner"),
		consumers: map[string]*consumer{},
		stopped:   make(chan struct{}),
	}
	switch s := c.Source.(type) {
	case *pgstore.Store:
		r.pg = newPGBackend(s)
		r.be = r.pg
	case *memstore.Store:
		r.mem = newMemBackend(s, c.Clock)
		r.be = r.mem
	default:
		return nil, fmt.Errorf("projections: RunnerConfig.Source is a %T: use a *pgstore.Store or a *memstore.Store (read models live beside the events)", c.Source)
	}
	reg := c.Store.Registry()
	for _, p := range c.Projections {
		cp, err := p.compile(reg)
		if err != nil {
			return nil, err
		}
		r.projs[cp.name] = cp
		r.list = append(r.list, cp)
		if cp.strong() {
			r.strong = append(r.strong, cp)
		}
	}
	byName := func(a, b *compiled) int { return strings.Compare(a.name, b.name) }
	slices.SortFunc(r.list, byName)
	slices.SortFunc(r.strong, byName)
	if c.Catalog != nil {
		for _, p := range c.Projections {
			if err := c.Catalog.RegisterSafely(p.ReadModel()); err != nil {
				return nil, fmt.Errorf("projections: fill catalog: %w", err)
			}
		}
	}
	return r, nil
}

// Start registers the projections in the store, drops generations left over
// by a crash, and starts consuming. It does not block. ctx bounds the
// registration only; the runner runs until Stop.
func (r *Runner) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.state == stateRunning:
		return ErrAlreadyStarted
	case r.state == stateStopping || r.isStopped():
		return ErrStopped
	}
	if err := r.be.register(ctx, r.list); err != nil {
		return err
	}
	for _, p := range r.list {
		if err := r.be.sweep(ctx, p.name); err != nil {
			return err
		}
	}
	logger := watermill.NewSlogLoggerWithLevelMapping(r.cfg.Logger.With("component", "projections.router"), map[slog.Level]slog.Level{
		slog.LevelInfo:  slog.LevelDebug,
		slog.LevelError: slog.LevelWarn, // every failed attempt; the runner logs what matters
	})
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: r.cfg.CloseTimeout}, logger)
	if err != nil {
		return fmt.Errorf("projections: router: %w", err)
	}
	router.AddMiddleware(middleware.Recoverer)
	router.AddMiddleware(r.cfg.Middleware...)
	router.AddConsumerHandler(keepaliveHandler, "", idleSubscriber{}, func(*message.Message) error { return nil })
	r.router = router
	r.runCtx, r.cancelRun = context.WithCancel(context.WithoutCancel(ctx))

	for _, p := range r.list {
		if err := r.addConsumerLocked(ctx, p, 0); err != nil {
			r.abortStartLocked()
			return err
		}
		_, building, err := r.be.generations(ctx, p.name)
		if err == nil && building != 0 {
			err = r.addConsumerLocked(ctx, p, building)
		}
		if err != nil {
			r.abortStartLocked()
			return err
		}
	}
	r.routerDone = make(chan struct{})
	go func() {
		defer close(r.routerDone)
		if err := router.Run(r.runCtx); err != nil {
			r.log.Error("projections: router stopped", "error", err)
		}
	}()
	select {
	case <-router.Running():
	case <-r.routerDone:
		r.abortStartLocked()
		return errors.New("projections: the Watermill router stopped while starting (see the log)")
	}
	r.state = stateRunning
	return nil
}

// abortStartLocked undoes a failed Start; the runner can be started again.
func (r *Runner) abortStartLocked() {
	for name, c := range r.consumers {
		_ = c.sub.Close()
		delete(r.consumers, name)
	}
	r.cancelRun()
	r.router = nil
}

func (r *Runner) isStopped() bool {
	select {
	case <-r.stopped:
		return true
	default:
		return false
	}
}

// Stop closes the router, waiting up to RunnerConfig.CloseTimeout for
// handlers in flight (their units roll back unless Acked), and releases the
// consumers' leases so another process takes over at once. It returns when
// everything has stopped or ctx is done. Stop may be called more than once.
func (r *Runner) Stop(ctx context.Context) error {
	r.mu.Lock()
	if r.state == stateNew {
		r.state = stateStopping
		r.stopOnce.Do(func() { close(r.stopped) })
		r.mu.Unlock()
		return nil
	}
	if r.state == stateRunning {
		r.state = stateStopping
		router, done := r.router, r.routerDone
		consumers := make([]*consumer, 0, len(r.consumers))
		for _, c := range r.consumers {
			consumers = append(consumers, c)
		}
		go func() {
			drain, cancel := context.WithTimeout(context.Background(), r.cfg.CloseTimeout)
			for _, c := range consumers {
				c.pause(drain)
			}
			cancel()
			if err := router.Close(); err != nil {
				r.log.Warn("projections: router close", "error", err)
			}
			<-done
			r.bg.Wait()
			r.mu.Lock()
			for name, c := range r.consumers {
				_ = c.sub.Close()
				delete(r.consumers, name)
			}
			r.mu.Unlock()
			r.cancelRun()
			r.stopOnce.Do(func() { close(r.stopped) })
		}()
	}
	r.mu.Unlock()
	select {
	case <-r.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stopped returns a channel closed once Stop has completed.
func (r *Runner) Stopped() <-chan struct{} { return r.stopped }

// rebuildConsumerName is the consumer (and checkpoint) name of a rebuild.
// Each rebuild has its own, so it starts from the beginning of the feed.
func rebuildConsumerName(name string, gen int) string {
	return name + "@rebuild-" + strconv.Itoa(gen)
}

// addConsumerLocked adds a handler for p's live consumer (rebuildGen 0) or
// rebuild consumer. The caller holds r.mu.
func (r *Runner) addConsumerLocked(ctx context.Context, p *compiled, rebuildGen int) error {
	c := &consumer{r: r, proj: p, rebuildGen: rebuildGen, name: p.name, paused: make(chan struct{})}
	if rebuildGen != 0 {
		c.name = rebuildConsumerName(p.name, rebuildGen)
		head, err := r.cfg.Store.Head(ctx)
		if err != nil {
			return fmt.Errorf("projections: rebuild %q: read head: %w", p.name, err)
		}
		c.startHead = head
	}
	if _, dup := r.consumers[c.name]; dup {
		return nil
	}
	sc := feed.SubscriberConfig{}
	if r.cfg.Subscriber != nil {
		sc = *r.cfg.Subscriber
	}
	sc.ConsumerName = c.name
	sc.Logger = r.cfg.Logger
	sc.Clock = r.cfg.Clock
	sc.NackBackoffMin, sc.NackBackoffMax = r.cfg.BackoffMin, r.cfg.BackoffMax
	sc.CommitBatch = r.cfg.CommitBatch
	if rebuildGen != 0 {
		sc.CommitBatch = r.cfg.RebuildCommitBatch
	}
	sc.OnCommitted = c.committed
	sub, err := feed.NewSubscriber(r.cfg.Source, &sc)
	if err != nil {
		return fmt.Errorf("projections: consumer %q: %w", c.name, err)
	}
	c.sub = sub
	c.handler = r.router.AddConsumerHandler(c.name, feed.TopicAll, sub, c.handle)
	r.consumers[c.name] = c
	if r.state == stateRunning {
		if err := r.router.RunHandlers(r.runCtx); err != nil {
			delete(r.consumers, c.name)
			_ = sub.Close()
			return fmt.Errorf("projections: start consumer %q: %w", c.name, err)
		}
	}
	return nil
}

// stopConsumer stops c's handler and subscriber (releasing its lease) and
// waits for both.
func (r *Runner) stopConsumer(c *consumer) {
	r.mu.Lock()
	if r.consumers[c.name] == c {
		delete(r.consumers, c.name)
	}
	r.mu.Unlock()
	drain, cancel := context.WithTimeout(context.Background(), r.cfg.CloseTimeout)
	c.pause(drain)
	cancel()
	c.handler.Stop()
	<-c.handler.Stopped()
	_ = c.sub.Close()
	r.changed.Notify()
}

// stopConsumerLater stops c from a goroutine of its own, for callers that
// run on c's delivery path.
func (r *Runner) stopConsumerLater(c *consumer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != stateRunning || r.consumers[c.name] != c {
		return
	}
	r.bg.Go(func() { r.stopConsumer(c) })
}

func (r *Runner) compiled(name string) (*compiled, error) {
	p, ok := r.projs[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownProjection, name)
	}
	return p, nil
}

// Status reports a projection's generation, state and checkpoints.
func (r *Runner) Status(ctx context.Context, name string) (Status, error) {
	if _, err := r.compiled(name); err != nil {
		return Status{}, err
	}
	s, err := r.be.status(ctx, name)
	if err != nil {
		return Status{}, err
	}
	cps := r.cfg.Source.Checkpoints()
	if s.Checkpoint, err = cps.Position(ctx, name); err != nil {
		return Status{}, fmt.Errorf("projections: status of %q: %w", name, err)
	}
	if s.Rebuild != nil {
		if s.Rebuild.Checkpoint, err = cps.Position(ctx, rebuildConsumerName(name, s.Rebuild.Generation)); err != nil {
			return Status{}, fmt.Errorf("projections: status of %q: %w", name, err)
		}
	}
	return s, nil
}

// Resume lets a halted projection (and its halted rebuild) try the failing
// event again, with a fresh count of attempts. Resuming a running
// projection does nothing. Consumers in other processes notice within
// RunnerConfig.StatusPollInterval.
func (r *Runner) Resume(ctx context.Context, name string) error {
	if _, err := r.compiled(name); err != nil {
		return err
	}
	if err := r.be.resume(ctx, name); err != nil {
		return err
	}
	r.mu.Lock()
	for _, c := range r.consumers {
		if c.proj.name == name {
			c.resetAttempts()
		}
	}
	r.mu.Unlock()
	r.log.Info("projections: resumed", "projection", name)
	r.changed.Notify()
	return nil
}

// DeadLetters lists the events a projection gave up on, oldest first.
func (r *Runner) DeadLetters(ctx context.Context, name string) ([]DeadLetter, error) {
	if _, err := r.compiled(name); err != nil {
		return nil, err
	}
	return r.be.deadLetters(ctx, name)
}

// Rebuild rebuilds a projection from the start of the feed without
// downtime for readers: it writes the next generation beside the active
// one, under its own consumer (name + "@rebuild-<generation>"), while
// readers keep reading the active generation and the live consumer keeps
// it current. When the new generation has caught up with everything the
// active one reflects, it becomes active in one transaction (with the
// rebuild's checkpoint commit on PostgreSQL) and the old generation's rows
// are dropped.
//
// Rebuild returns once the switch is done. If ctx ends first, Rebuild
// returns ctx's error and the rebuild carries on; a runner started later
// resumes it. A rebuild that halts is reported as a *HaltedError: fix the
// cause and Resume, and the rebuild carries on (call Rebuild again to wait
// for it). The live generation is unaffected by a failing rebuild.
//
// Use it after changing what a handler writes, or to recover from a bug
// that wrote bad rows (or dead-lettered events). Raw tables a handler
// writes through Tx.Pgx are not rebuilt beside unless keyed by
// Tx.Generation.
func (r *Runner) Rebuild(ctx context.Context, name string) error {
	p, err := r.compiled(name)
	if err != nil {
		return err
	}
	r.mu.Lock()
	running := r.state == stateRunning
	r.mu.Unlock()
	if !running {
		return ErrNotRunning
	}
	gen, switched, oldGen, err := r.be.startRebuild(ctx, name)
	if err != nil {
		return err
	}
	if switched {
		r.log.Info("projections: nothing applied yet, switched to an empty generation", "projection", name, "generation", gen)
		r.switched(name, gen, oldGen, events.Token{})
		return r.be.sweep(ctx, name)
	}
	r.log.Info("projections: rebuild started", "projection", name, "generation", gen)
	r.mu.Lock()
	if r.state == stateRunning {
		err = r.addConsumerLocked(ctx, p, gen)
	} else {
		err = ErrStopped
	}
	r.mu.Unlock()
	if err != nil {
		return err
	}
	return r.awaitRebuild(ctx, name, gen)
}

// awaitRebuild waits until gen is active, or reports why it cannot be.
func (r *Runner) awaitRebuild(ctx context.Context, name string, gen int) error {
	poll := time.NewTicker(r.cfg.StatusPollInterval)
	defer poll.Stop()
	for {
		changed := r.changed.C()
		active, building, err := r.be.generations(ctx, name)
		switch {
		case err != nil:
			return err
		case active == gen:
			return r.be.sweep(ctx, name)
		case building != gen:
			return fmt.Errorf("projections: rebuild of %q to generation %d was abandoned (generation %d is active)", name, gen, active)
		}
		if s, err := r.be.status(ctx, name); err == nil && s.Rebuild != nil && s.Rebuild.State == StateHalted {
			return &HaltedError{Projection: name, Generation: gen, EventID: s.Rebuild.HaltedEventID, Reason: s.Rebuild.HaltedReason}
		}
		select {
		case <-changed:
		case <-poll.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// switched tells the tracker and live views that gen became active with
// everything up to tok.
func (r *Runner) switched(name string, gen, oldGen int, tok events.Token) {
	r.log.Info("projections: switched generation", "projection", name, "generation", gen, "old_generation", oldGen, "position", tok.String())
	if r.cfg.Tracker != nil && !tok.IsZero() {
		r.cfg.Tracker.Advance(name, tok)
	}
	if r.cfg.OnUpdate != nil {
		r.cfg.OnUpdate(Update{Kind: UpdateReplaced, Projection: name, Generation: gen, Token: tok})
	}
	r.changed.Notify()
}

// Reset moves a projection back to tok: its checkpoint and the active
// generation's watermark are set to tok in one unit of work, so every event
// after tok is applied again over the current rows (which are not
// cleared). The projection is also resumed if it was halted.
//
// Reset is for projections whose handlers are idempotent upserts (a row
// that holds the latest state of something); for handlers that accumulate
// (counters, appends to lists) replaying events again double-counts: use
// Rebuild. The projection's consumer in this runner is stopped for the
// reset and started again; stop it in other processes first, or Reset fails
// with feed.ErrLeaseHeld.
func (r *Runner) Reset(ctx context.Context, name string, tok events.Token) error {
	p, err := r.compiled(name)
	if err != nil {
		return err
	}
	r.mu.Lock()
	c := r.consumers[name]
	r.mu.Unlock()
	if c != nil {
		r.stopConsumer(c)
		defer func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.state == stateRunning {
				if aerr := r.addConsumerLocked(context.WithoutCancel(ctx), p, 0); aerr != nil {
					r.log.Error("projections: restart consumer after reset", "projection", name, "error", aerr)
				}
			}
		}()
	}
	cps := r.cfg.Source.Checkpoints()
	ttl := feed.DefaultLeaseTTL
	if r.cfg.Subscriber != nil && r.cfg.Subscriber.LeaseTTL > 0 {
		ttl = r.cfg.Subscriber.LeaseTTL
	}
	lease, err := cps.Acquire(ctx, name, "projections-reset-"+strconv.FormatInt(time.Now().UnixNano(), 36), ttl)
	if err != nil {
		return fmt.Errorf("projections: reset %q: take the consumer's lease: %w", name, err)
	}
	defer func() { _ = cps.Release(context.WithoutCancel(ctx), lease) }()
	unit, err := cps.Begin(ctx)
	if err != nil {
		return fmt.Errorf("projections: reset %q: %w", name, err)
	}
	if err := r.be.reset(unit.Context(ctx), name, tok); err != nil {
		_ = unit.Rollback(ctx)
		return err
	}
	if err := unit.Commit(ctx, feed.Move{Lease: lease, Position: tok}); err != nil {
		return fmt.Errorf("projections: reset %q: %w", name, err)
	}
	if r.cfg.Tracker != nil {
		r.cfg.Tracker.Reset(name, tok)
	}
	r.log.Info("projections: reset", "projection", name, "position", tok.String())
	r.changed.Notify()
	return nil
}

// View returns a reader of a projection's active generation.
func (r *Runner) View(name string) *View {
	v := &View{name: name}
	if _, err := r.compiled(name); err != nil {
		v.err = err
		return v
	}
	v.rows = r.be.reader(name)
	return v
}

// Appender returns an events.Store whose appends also apply the runner's
// strong projections in the same transaction.
func (r *Runner) Appender() *Appender {
	return &Appender{Store: r.cfg.Store, r: r}
}

// idleSubscriber delivers nothing until its context ends.
type idleSubscriber struct{}

func (idleSubscriber) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	ch := make(chan *message.Message)
	context.AfterFunc(ctx, func() { close(ch) })
	return ch, nil
}

func (idleSubscriber) Close() error { return nil }

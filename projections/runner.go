package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/signal"
)

type runState int

const (
	stateNew runState = iota
	stateRunning
	stateStopping
)

// Runner runs projections on converge's consumer runtime: each projection
// is a feed.Processor (its checkpoint is the projection's position, for the
// Tracker and for token waits), filtered in the store by the types it
// handles, with the processor's failure policy; a rebuild runs a second
// processor beside it. It also serves readers (View), installs the append
// hook of strong projections, and runs operations (Status, Resume,
// Rebuild, Reset, DeadLetters, RequestReplay).
//
// Several processes may run the same projections: their processors share
// the work through the runtime's membership and leases.
type Runner struct {
	cfg    RunnerConfig
	projs  map[string]*compiled
	list   []*compiled // by name
	strong []*compiled // by name
	hooked feed.HookedSource
	log    *slog.Logger
	// owner names this process in the requests it takes.
	owner string

	changed signal.Broadcast // a generation, a halt or a rebuild moved

	mu         sync.Mutex
	state      runState
	userRouter *message.Router
	runCtx     context.Context
	cancelRun  context.CancelFunc
	procs      map[string]*procRun // by processor name
	removeHook func()
	stopped    chan struct{}
	stopOnce   sync.Once
	bg         sync.WaitGroup
	dropping   map[string]bool // projections whose old generations are being dropped
	// dropHook, set by tests, hears every batch a drop deletes.
	dropHook func(projection string, gen, rows int)
	// reconcileHook, set by tests, runs after the monitor read a state row.
	reconcileHook func(projection string)
	// livePos is, per projection, the newest position its live processor
	// committed in this process (see committed).
	posMu   sync.Mutex
	livePos map[string]events.Token
	// resetPauses are the pauses of live processors for unfinished reset
	// requests, by projection (followResets); the monitor's own.
	resetPauses map[string]resetPause
	// rebuildHook, set by tests, runs before a rebuild's processor starts.
	rebuildHook func(ctx context.Context, processor string)
	// switchHook, set by tests, hears every switch attempt that did not
	// switch.
	switchHook func(projection string)
	// awaitHook, set by tests, hears each pass of a rebuild's wait.
	awaitHook func(gen int)
	// supersedeAfter is supersedeGrace; tests shorten it.
	supersedeAfter time.Duration
	// mootLetters marks the projections whose dead letters clearMoot
	// checks at the monitor's next pass (guarded by mu).
	mootLetters map[string]bool
}

// procRun is one running processor: a projection's live processor
// (rebuild 0) or a rebuild's.
type procRun struct {
	name    string
	proj    *compiled
	rebuild int
	proc    *feed.Processor
	// router is the Runner's own router for this processor; nil when it is
	// mounted on the user's router (AddHandlers).
	router *message.Router
	// stop ends a processor that runs without a router (a rebuild, see
	// runDirect).
	stop context.CancelFunc
	done chan struct{} // closed when router.Run (or Processor.Run) returned
	// gen is the generation the processor last wrote, for OnHalt.
	gen       atomic.Int64
	closeOnce sync.Once
}

// NewRunner checks cfg, binds the projections' handlers to the store's
// events.Registry and fills cfg.Catalog. Nothing runs until Start, which
// also registers the projections in the store: until a runner has started
// once, Status fails with ErrNotRegistered and views read nothing.
func NewRunner(cfg *RunnerConfig) (*Runner, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	r := &Runner{
		cfg:      c,
		projs:    map[string]*compiled{},
		log:      c.Logger.With("component", "projections.Runner"),
		procs:    map[string]*procRun{},
		stopped:  make(chan struct{}),
		dropping: map[string]bool{},
		owner:    runnerOwner(),

		supersedeAfter: supersedeGrace,
		mootLetters:    map[string]bool{},
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
	if len(r.strong) > 0 {
		hs, ok := c.Source.(feed.HookedSource)
		if !ok {
			return nil, fmt.Errorf("projections: strong projections need a store that runs append hooks (feed.HookedSource); %T does not", c.Source)
		}
		r.hooked = hs
	}
	if c.Catalog != nil {
		for _, p := range c.Projections {
			if err := c.Catalog.RegisterSafely(p.ReadModel()); err != nil {
				return nil, fmt.Errorf("projections: fill catalog: %w", err)
			}
		}
	}
	return r, nil
}

// AddHandlers mounts the projections' processors on a Watermill router you
// run, instead of routers of the Runner's own: the router's middleware
// then applies to them. Call it before Start; Start mounts them (and runs
// them at once if the router is already running). They stay mounted there
// until Stop: Reset pauses a projection's processor without ending its
// handler on your router (see Reset). Rebuilds run without a router
// (feed.Processor.Run), so neither your middleware nor
// RunnerConfig.Middleware sees them.
//
// Stop ends the projections' handlers on your router: a message still in
// a handler's hands is given up (its unit never commits, and the event is
// delivered again by the next holder of the lease), and the leases are
// released by the time Stop returns. Watermill closes a router whose
// handlers have all stopped, so a router that had no other handler
// closes then.
func (r *Runner) AddHandlers(router *message.Router) error {
	if router == nil {
		return errors.New("projections: AddHandlers: nil router")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != stateNew {
		return errors.New("projections: AddHandlers must be called before Start")
	}
	r.userRouter = router
	return nil
}

// Start registers the projections in the store, installs the strong
// projections' append hook and starts the processors. It does not block.
// ctx bounds the registration only; the runner runs until Stop. Old
// generations left to drop are dropped in the background.
func (r *Runner) Start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.state == stateRunning:
		return ErrAlreadyStarted
	case r.state == stateStopping || r.isStopped():
		return ErrStopped
	}
	cps := r.cfg.Source.Checkpoints()
	for _, p := range r.list {
		p.refreshTypes() // aliases registered since NewRunner
		if err := register(ctx, cps, p); err != nil {
			return err
		}
	}
	r.runCtx, r.cancelRun = context.WithCancel(context.WithoutCancel(ctx))
	if len(r.strong) > 0 {
		release, err := claimStrong(r.hooked, r.strong)
		if err != nil {
			r.cancelRun()
			return err
		}
		remove := r.hooked.AddAppendHook(&strongHook{r: r, projs: r.strong})
		r.removeHook = func() { remove(); release() }
	}
	var states []state
	for _, p := range r.list {
		st, err := mustState(ctx, r.cfg.Source.Rows(), p.name, feed.LockNone)
		if err != nil {
			r.abortStartLocked()
			return err
		}
		states = append(states, st)
		if r.cfg.Tracker != nil && p.partitions > 1 {
			r.cfg.Tracker.Group(p.name, p.checkpoints(p.name)...)
		}
		if err := r.startProcLocked(p, 0, r.userRouter); err != nil {
			r.abortStartLocked()
			return err
		}
	}
	for i, p := range r.list {
		// A rebuild another build began is left to it (or restarted by the
		// monitor: reconcile).
		if b := states[i].Building; b != 0 && p.kinOf(states[i].BuildingTypes) == sameBuild {
			if err := r.startProcLocked(p, b, nil); err != nil {
				r.abortStartLocked()
				return err
			}
		}
	}
	r.state = stateRunning
	r.bg.Go(func() { r.monitor(r.runCtx) })
	for i, p := range r.list {
		if len(states[i].Dropping) > 0 {
			r.dropLaterLocked(p)
		}
	}
	return nil
}

// abortStartLocked undoes a failed Start; the runner can be started again.
func (r *Runner) abortStartLocked() {
	procs := r.procs
	r.procs = map[string]*procRun{}
	for _, pr := range procs {
		r.closeProc(pr)
	}
	if r.removeHook != nil {
		r.removeHook()
		r.removeHook = nil
	}
	r.cancelRun()
}

func (r *Runner) isStopped() bool {
	select {
	case <-r.stopped:
		return true
	default:
		return false
	}
}

// newProc builds the processor of p's live generation (rebuild 0) or of
// generation rebuild.
func (r *Runner) newProc(p *compiled, rebuild int) (*procRun, error) {
	pr := &procRun{name: p.name, proj: p, rebuild: rebuild}
	batch := r.cfg.CommitBatch
	if rebuild != 0 {
		pr.name = rebuildName(p.name, rebuild)
		batch = r.cfg.RebuildCommitBatch
	}
	a := &applier{r: r, proj: p, rebuild: rebuild, gen: &pr.gen}
	if rebuild != 0 {
		a.stale = func() { r.changed.Notify() }
	}
	policy := feed.Halt
	if r.cfg.OnFailure == DeadLetterOnFailure && rebuild == 0 {
		// A rebuild halts whatever the policy: one that dead-lettered an
		// event would switch in without it, and the dead letter would
		// belong to a processor nobody replays once the switch is made.
		policy = feed.DeadLetter
	}
	sc := r.subscriberConfig()
	if rebuild != 0 {
		// A rebuild reads pages at least as large as its units: a unit
		// never spans pages, and a page's read is overlapped with the
		// previous page's delivery.
		sc.BatchSize = max(sc.BatchSize, batch)
	}
	proc, err := feed.NewProcessor(r.cfg.Source, &feed.ProcessorConfig{
		Name:                pr.name,
		Types:               p.typeList(),
		Partitions:          p.partitions,
		PartitionKey:        p.key,
		CommitBatch:         batch,
		MaxAttempts:         r.cfg.MaxAttempts,
		OnFailure:           policy,
		HaltCheckInterval:   r.cfg.StatusPollInterval,
		ReplayCheckInterval: r.cfg.StatusPollInterval,
		Subscriber:          sc,
		Logger:              r.cfg.Logger,
		OnCommitted:         func(cp string, pos events.Token) { r.committed(pr, cp, pos) },
		OnHalt:              func(h feed.HaltRecord) { r.halted(pr, h) },
		OnDeadLetter:        func(d feed.DeadLetterRecord) { r.deadLettered(pr, d) },
	}, a.handle)
	if err != nil {
		return nil, fmt.Errorf("projections: processor %q: %w", pr.name, err)
	}
	pr.proc = proc
	return pr, nil
}

// subscriberConfig is the template for the processors' subscribers.
func (r *Runner) subscriberConfig() feed.SubscriberConfig {
	sc := feed.SubscriberConfig{}
	if r.cfg.Subscriber != nil {
		sc = *r.cfg.Subscriber
	}
	if sc.Logger == nil {
		sc.Logger = r.cfg.Logger
	}
	if sc.Clock == nil {
		sc.Clock = r.cfg.Clock
	}
	if sc.NackBackoffMin == 0 && sc.NackBackoffMax == 0 {
		sc.NackBackoffMin, sc.NackBackoffMax = r.cfg.BackoffMin, r.cfg.BackoffMax
	}
	return sc
}

// startProcLocked builds and mounts a processor: on router when given
// (the user's), else on a router of its own, run at once. The caller holds
// r.mu.
func (r *Runner) startProcLocked(p *compiled, rebuild int, router *message.Router) error {
	name := p.name
	if rebuild != 0 {
		name = rebuildName(p.name, rebuild)
	}
	if _, dup := r.procs[name]; dup {
		return nil
	}
	pr, err := r.newProc(p, rebuild)
	if err != nil {
		return err
	}
	if router != nil {
		if err := pr.proc.AddHandlers(router); err != nil {
			return fmt.Errorf("projections: mount %q: %w", name, err)
		}
		if router.IsRunning() {
			if err := router.RunHandlers(r.runCtx); err != nil {
				return fmt.Errorf("projections: run %q: %w", name, err)
			}
		}
		r.procs[name] = pr
		return nil
	}
	run := r.runOwn
	if rebuild != 0 {
		run = r.runDirect
	}
	if err := run(pr); err != nil {
		return err
	}
	r.procs[name] = pr
	return nil
}

// runDirect runs a rebuild's processor without a router
// (feed.Processor.Run): a rebuild replays the whole feed, and a router's
// message, goroutine and hand-offs per event cost more than a cheap
// handler does. Middleware therefore does not see rebuilds.
func (r *Runner) runDirect(pr *procRun) error {
	ctx, cancel := context.WithCancel(r.runCtx)
	pr.stop, pr.done = cancel, make(chan struct{})
	go func() {
		defer close(pr.done)
		if r.rebuildHook != nil {
			r.rebuildHook(ctx, pr.name)
		}
		if err := pr.proc.Run(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("projections: processor stopped", "processor", pr.name, "error", err)
		}
	}()
	return nil
}

// runOwn runs pr on a router of its own. Each processor has its own, so
// stopping one never leaves another's router without handlers, which
// Watermill would close.
func (r *Runner) runOwn(pr *procRun) error {
	logger := watermill.NewSlogLoggerWithLevelMapping(r.cfg.Logger.With("component", "projections.router", "processor", pr.name), map[slog.Level]slog.Level{
		slog.LevelInfo:  slog.LevelDebug,
		slog.LevelError: slog.LevelWarn, // every failed attempt; the processor logs what matters
	})
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: r.cfg.CloseTimeout}, logger)
	if err != nil {
		return fmt.Errorf("projections: router: %w", err)
	}
	router.AddMiddleware(middleware.Recoverer)
	router.AddMiddleware(r.cfg.Middleware...)
	if err := pr.proc.AddHandlers(router); err != nil {
		return fmt.Errorf("projections: mount %q: %w", pr.name, err)
	}
	pr.router, pr.done = router, make(chan struct{})
	go func() {
		defer close(pr.done)
		if err := router.Run(r.runCtx); err != nil {
			r.log.Error("projections: router stopped", "processor", pr.name, "error", err)
		}
	}()
	select {
	case <-router.Running():
		return nil
	case <-pr.done:
		_ = pr.proc.Close()
		return fmt.Errorf("projections: the router of %q stopped while starting (see the log)", pr.name)
	}
}

// closeProc stops pr: its router (waiting up to CloseTimeout for handlers
// in flight, whose units roll back unless Acked), then its processor,
// which releases its leases and leaves its membership group. A processor
// on the application's router (AddHandlers), whose router goes on, is
// closed by itself: its Close waits for its partitions to end and give
// their leases back, giving up on a handler in flight.
func (r *Runner) closeProc(pr *procRun) {
	pr.closeOnce.Do(func() {
		if pr.stop != nil {
			pr.stop()
			t := time.NewTimer(r.cfg.CloseTimeout)
			defer t.Stop()
			select {
			case <-pr.done:
			case <-t.C:
				r.log.Warn("projections: a handler did not return within CloseTimeout after its context ended", "processor", pr.name)
			}
		}
		if pr.router != nil {
			if err := pr.router.Close(); err != nil {
				r.log.Warn("projections: router close", "processor", pr.name, "error", err)
			}
			<-pr.done
		}
		_ = pr.proc.Close()
	})
}

// Stop stops every processor, waiting up to RunnerConfig.CloseTimeout for
// handlers in flight on the Runner's own routers (on yours, see
// AddHandlers), releases their leases so another process takes over at
// once, and removes the append hook. It returns when everything has
// stopped or ctx is done. Stop may be called more than once. After Stop,
// Start, Rebuild, Reset, Resume and RequestReplay fail with ErrStopped.
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
		procs := r.procs
		r.procs = map[string]*procRun{}
		remove := r.removeHook
		r.removeHook = nil
		go func() {
			var wg sync.WaitGroup
			for _, pr := range procs {
				wg.Go(func() { r.closeProc(pr) })
			}
			wg.Wait()
			r.forgetFinishedRebuilds(procs)
			if remove != nil {
				remove()
			}
			r.cancelRun()
			r.bg.Wait()
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

// forgetFinishedRebuilds deletes the checkpoints of stopped rebuild
// processors whose rebuild is over (switched or abandoned): their leases
// are free now, so nothing recreates them.
func (r *Runner) forgetFinishedRebuilds(procs map[string]*procRun) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	for _, pr := range procs {
		if pr.rebuild == 0 {
			continue
		}
		st, ok, err := readState(ctx, r.cfg.Source.Rows(), pr.proj.name, feed.LockNone)
		if err == nil && ok && st.Building != pr.rebuild {
			r.deleteCheckpoints(ctx, pr.proj.checkpoints(pr.name))
		}
	}
}

// Stopped returns a channel closed once Stop has completed.
func (r *Runner) Stopped() <-chan struct{} { return r.stopped }

func (r *Runner) compiled(name string) (*compiled, error) {
	p, ok := r.projs[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownProjection, name)
	}
	return p, nil
}

// partitionOf returns the partition env belongs to in p's processors.
func (r *Runner) partitionOf(p *compiled, env events.Envelope) int {
	return feed.PartitionOf(feed.KeyOf(p.key, env), p.partitions)
}

// committed hears a processor's commits and advances. OnCommitted hears a
// commit before this Runner advances the Tracker (the store's own
// notification may reach a watching Tracker sooner).
func (r *Runner) committed(pr *procRun, checkpoint string, pos events.Token) {
	if r.cfg.OnCommitted != nil {
		r.cfg.OnCommitted(checkpoint, pos)
	}
	if pr.rebuild == 0 && r.cfg.Tracker != nil {
		r.cfg.Tracker.Advance(checkpoint, pos)
	}
	r.posMu.Lock()
	defer r.posMu.Unlock()
	if pr.rebuild == 0 {
		if r.livePos == nil {
			r.livePos = map[string]events.Token{}
		}
		if pos.After(r.livePos[pr.proj.name]) {
			r.livePos[pr.proj.name] = pos
		}
		return
	}
	// The rebuild may be able to switch once it has caught up with the
	// live processor; far behind it, a switch attempt on every commit would
	// only read the two positions again. (A live processor in another
	// process is unknown here: then every commit tries, and the monitor's
	// poll catches the rest.)
	if !pos.Before(r.livePos[pr.proj.name]) {
		r.changed.Notify()
	}
}

func (r *Runner) halted(pr *procRun, h feed.HaltRecord) {
	gen := int(pr.gen.Load())
	if pr.rebuild != 0 {
		gen = pr.rebuild
	}
	r.log.Error("projections: projection halted: fix the cause, then call Runner.Resume",
		"projection", pr.proj.name, "generation", gen, "event_id", h.EventID, "reason", h.Reason)
	if r.cfg.OnHalt != nil {
		r.cfg.OnHalt(&HaltedError{Projection: pr.proj.name, Generation: gen, EventID: h.EventID, Reason: h.Reason})
	}
	r.changed.Notify()
}

func (r *Runner) deadLettered(pr *procRun, d feed.DeadLetterRecord) {
	if pr.rebuild == 0 {
		r.mu.Lock()
		r.mootLetters[pr.proj.name] = true
		r.mu.Unlock()
		r.changed.Notify()
	}
	if r.cfg.OnDeadLetter != nil {
		gen := int(pr.gen.Load())
		if pr.rebuild != 0 {
			gen = pr.rebuild
		}
		r.cfg.OnDeadLetter(deadLetterOf(pr.proj.name, gen, 0, d))
	}
}

// View returns a reader of a projection's active generation.
func (r *Runner) View(name string) *View {
	v := &View{name: name}
	if _, err := r.compiled(name); err != nil {
		v.err = err
		return v
	}
	v.rows = &viewRows{src: r.cfg.Source, reg: r.cfg.Store.Registry(), name: name}
	return v
}

// Appender returns the store as an events.Store. Strong projections are
// applied by the append hook the Runner installs on the store at Start, so
// every append through the store, or through a unit of it, applies them:
// the Appender is only kept for code written against it.
func (r *Runner) Appender() *Appender {
	return &Appender{Store: r.cfg.Store, r: r}
}

// AwaitTakeover waits until every live projection's processor has taken
// over the partitions assigned to this process from processes of another
// build that handle less (feed.Processor.AwaitTakeover): events only this
// build's handlers take, appended after it returns, are applied rather than
// filtered out by an older process. It returns at once when no other build
// runs the projections. ctx bounds the wait.
func (r *Runner) AwaitTakeover(ctx context.Context) error {
	r.mu.Lock()
	var procs []*feed.Processor
	for _, pr := range r.procs {
		if pr.rebuild == 0 && pr.proc != nil {
			procs = append(procs, pr.proc)
		}
	}
	r.mu.Unlock()
	for _, p := range procs {
		if err := p.AwaitTakeover(ctx); err != nil {
			return fmt.Errorf("projections: %w", err)
		}
	}
	return nil
}

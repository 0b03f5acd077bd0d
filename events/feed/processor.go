package feed

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/internal/stackgrow"
)

// Handler handles one event. Its context carries the event's unit
// (events.UnitFromContext; a feed.Unit, whose Rows and appends commit with
// the checkpoint), the gate's outcome (GateFromContext) and the event's
// place in its unit (UnitIndex). Returning nil applies the event; an error
// rolls the unit back and the failure policy decides what follows.
type Handler func(ctx context.Context, env events.Envelope) error

// Processor is converge's consumer runtime: projections, sagas and command
// handlers all run on it. It reads the feed filtered in the store (its
// partitions in one process share a read per wake-up, see SharedReads),
// split into partitions that the live processes share, delivers each partition's
// events in order through a Watermill router (so the router's middleware
// applies), runs the handler in a unit of work that commits with the
// partition's checkpoint, and applies one failure policy: retry with
// backoff, then halt or dead-letter with the reason.
//
// Mount it with AddHandlers on a router you run, as cqrs.EventProcessor
// does: one router handler per partition. Every process mounting the same
// processor joins its membership group; partitions are assigned from the
// sorted live members and held under leases whose generations fence every
// commit, so a process that died, froze or left loses its share within a
// lease TTL and a frozen process's late commit is refused.
//
// A Processor delivers once, one way: mounted on one router, or by one
// Run. When that router closes (or every partition's subscription ends)
// or Run returns, the processor stops as Close stops it, leaving the
// group so the others take its share at once (where the source is a
// MembershipWatcher, as both stores are; else at their next membership
// heartbeat, every RenewInterval), not after a lease TTL; build a new
// Processor to deliver again. Pause, by contrast, stops delivery for a while and keeps
// the router's subscriptions.
type Processor struct {
	src Source
	// reads is what the partitions' consumers read: src, through one
	// shared read per wake-up when there are several partitions.
	reads   Source
	cfg     ProcessorConfig
	subCfg  SubscriberConfig
	handler Handler
	// member is this processor's id in its group and the prefix of its
	// leases' owners: the configured Owner and an instance id, so two
	// processors never count as one member or share a lease, however
	// their Owners are set.
	member string

	mship     *membership
	startOnce sync.Once
	// heartbeating is set once the membership has started (see
	// ProcessorStatus.Heartbeating).
	heartbeating atomic.Bool
	// startErr refuses to start (seed found a changed PartitionKey).
	startErr error
	mctx     context.Context
	mcancel  context.CancelFunc
	mdone    chan struct{}

	parts []*partitionState
	// seedMu guards seeded, carried and refused: the start tries the seed
	// once, and each partition's consumer waits for it to have succeeded
	// before it takes its lease (awaitSeed).
	seedMu sync.Mutex
	seeded bool
	// carried is what the partitions of the previous count had handled.
	carried *carriedPositions
	// refused is the seed's ErrPartitionKeyChanged, for Run to return when
	// the partitions found it after the start.
	refused error
	// mode is how the processor delivers once chosen: by a router
	// (AddHandlers) or by Run. A processor delivering both ways, or on two
	// routers, would run two consumers per partition, each taking the
	// other's lease in turn.
	mode atomic.Int32
	// live counts the partition subscriptions a router runs. The last to
	// end stops the processor: a router that closed delivers nothing any
	// more, and a member that stays in the group keeps its share of the
	// partitions, which nobody would deliver.
	live atomic.Int64

	// subsMu guards subs, the consumers of router subscriptions still
	// running (their leases not yet given back), and subsDone, closed when
	// their count drops to 0 while Close waits for them.
	subsMu   sync.Mutex
	subs     int
	subsDone chan struct{}

	// pauseMu guards the pauses (Pause). While paused is above 0 no
	// partition begins a round of delivery (enterRound); unpaused is the
	// context of the rounds under way, ended when a pause begins, and
	// resumed is closed when the pauses in force have all ended. rounds
	// counts the rounds under way, and roundsDone is closed when their
	// count drops to 0 while a Pause waits for it.
	pauseMu    sync.Mutex
	paused     int
	unpaused   context.Context
	endRounds  context.CancelFunc
	resumed    chan struct{}
	rounds     int
	roundsDone chan struct{}
}

const (
	modeUnset int32 = iota
	modeRouter
	modeRun
)

// errMode refuses a second way, or a second time, of delivering.
var errMode = errors.New("feed: the processor is already mounted on a router (AddHandlers) or running (Run): a processor delivers one way, once; build another Processor for another router")

// errStopped refuses to mount a processor that has stopped.
var errStopped = errors.New("feed: the processor has stopped (Close was called, or the router it was mounted on closed): build a new Processor to deliver again")

// NewProcessor returns a processor of src calling h.
func NewProcessor(src Source, cfg *ProcessorConfig, h Handler) (*Processor, error) {
	if src == nil {
		return nil, errors.New("feed: NewProcessor needs a Source (a memstore.Store or a pgstore.Store)")
	}
	if h == nil {
		return nil, errors.New("feed: NewProcessor needs a Handler")
	}
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	sc := c.Subscriber
	sc.ConsumerName = c.Name
	sc.CommitBatch = c.CommitBatch
	// The partitions' subscriber lines (leases, reads) go to the
	// subscriber's own logger when one is set; the processor's lines
	// (failures, halts, records) to Logger.
	sc.Logger = cmp.Or(c.Subscriber.Logger, c.Logger)
	sc = sc.withDefaults()
	if err := sc.validate(); err != nil {
		return nil, fmt.Errorf("feed: ProcessorConfig.Subscriber: %w", err)
	}
	member := sc.Owner + "/" + newInstanceID()
	p := &Processor{src: src, reads: src, cfg: c, subCfg: sc, handler: h, member: member, mdone: make(chan struct{})}
	if c.Partitions > 1 {
		p.reads = newSharedReads(src, c.Partitions, sc.BatchSize)
	}
	p.mship = &membership{
		cps:     src.Checkpoints(),
		group:   c.Name,
		member:  member,
		ttl:     sc.LeaseTTL,
		every:   sc.RenewInterval,
		log:     c.Logger.With("processor", c.Name),
		rows:    src.Rows(),
		handles: handlesOf(&c),
	}
	if w, ok := src.(MembershipWatcher); ok {
		p.mship.watch = w
	}
	p.mctx, p.mcancel = context.WithCancel(context.Background())
	p.unpaused, p.endRounds = context.WithCancel(context.Background())
	for i := range c.Partitions {
		p.parts = append(p.parts, &partitionState{
			index:    i,
			name:     PartitionName(c.Name, i, c.Partitions),
			attempts: map[string]*attempt{},
		})
	}
	return p, nil
}

// Name returns the processor's name.
func (p *Processor) Name() string { return p.cfg.Name }

// CheckpointNames returns the checkpoint name of every partition, in
// partition order. The processor's position is the lowest of them.
func (p *Processor) CheckpointNames() []string {
	out := make([]string, len(p.parts))
	for i, ps := range p.parts {
		out[i] = ps.name
	}
	return out
}

// Position returns the processor's position: the lowest of its partitions'
// checkpoints. Every event up to it that the processor handles is applied.
func (p *Processor) Position(ctx context.Context) (events.Token, error) {
	var low events.Token
	for i, ps := range p.parts {
		pos, err := p.src.Checkpoints().Position(ctx, ps.name)
		if err != nil {
			return events.Token{}, fmt.Errorf("feed: position of %s: %w", ps.name, err)
		}
		if i == 0 || pos.Before(low) {
			low = pos
		}
	}
	return low, nil
}

// AddHandlers mounts the processor on r: one handler per partition, named
// after its checkpoint. Run the router to start it. Closing the router
// stops the processor: by the time the router's Close returns, its leases
// are released (a message a handler still holds is given up, as by
// Close) and it has left the group, so the other processes take over its
// partitions at once (at their next membership heartbeat, every
// RenewInterval, where the source is not a MembershipWatcher) rather than
// after a lease TTL (Close is then not needed, and harmless).
// Close stops the processor alone, the router running on (Watermill
// closes it if it has no other handler left); Pause stops its delivery
// for a while, its handlers staying on the router.
//
// A processor mounts once: a second AddHandlers (on another router, or
// the same), AddHandlers after Run, and AddHandlers once it has stopped
// fail. It fails with ErrPartitionKeyChanged when the processor last ran
// with another PartitionKey at the same partition count. It fails, adding
// none of its handlers, on a router that is not running yet and already
// has a handler of one of their names (the processor's Name, or with Partitions above 1 a
// partition's, PartitionName): the router would panic at the duplicate.
func (p *Processor) AddHandlers(r *message.Router) error {
	if p.mctx.Err() != nil {
		return errStopped
	}
	if !p.mode.CompareAndSwap(modeUnset, modeRouter) {
		return errMode
	}
	// The router refuses a handler name it has, with a panic, once the
	// partitions before it are added: checked here, a refused call adds
	// nothing.
	// Router.Handlers reads the router's map without its lock, which a
	// running router writes to as handlers stop: only a router that is
	// not running is checked (one that runs panics at a duplicate, as
	// Watermill does).
	var taken map[string]message.HandlerFunc
	if !r.IsRunning() {
		taken = r.Handlers()
	}
	for _, ps := range p.parts {
		if _, ok := taken[ps.name]; ok {
			p.mode.CompareAndSwap(modeRouter, modeUnset)
			whose := "its handler"
			if len(p.parts) > 1 {
				whose = fmt.Sprintf("its handler for partition %d of %d", ps.index, len(p.parts))
			}
			return fmt.Errorf("feed: processor %s: the router has a handler named %q, the name of %s; a router takes a handler name once (rename the processor or the other handler)",
				p.cfg.Name, ps.name, whose)
		}
	}
	// A refusal at the router's start would leave the router waiting on
	// handlers that never started: refuse here, before it runs.
	ctx, cancel := context.WithTimeout(p.mctx, p.subCfg.LeaseTTL)
	defer cancel()
	if err := p.checkKey(ctx); err != nil {
		// Nothing was mounted: a later call meets the same refusal.
		p.mode.CompareAndSwap(modeRouter, modeUnset)
		return err
	}
	for _, ps := range p.parts {
		sub := &partitionSubscriber{p: p, ps: ps}
		r.AddConsumerHandler(ps.name, ps.name, sub, p.messageHandler(ps))
	}
	return nil
}

// startMembership starts heartbeating once, at the first partition's
// subscription, and keeps it until the processor stops (Close, the end of
// Run, or the end of the last partition's subscription on a router). It
// fails, every time, when the processor must not start at all.
func (p *Processor) startMembership() error {
	p.startOnce.Do(func() {
		if p.startErr = p.seed(p.mctx); p.startErr != nil {
			close(p.mdone)
			return
		}
		p.heartbeating.Store(true)
		go func() {
			defer close(p.mdone)
			replays := make(chan struct{})
			go func() {
				defer close(replays)
				p.pollReplays(p.mctx)
			}()
			p.mship.run(p.mctx)
			<-replays
		}()
	})
	return p.startErr
}

// Close stops the processor: it ends its partitions' subscriptions (a
// router's handlers then stop, and Watermill closes a router left with no
// handler), leaves the membership group and waits for the processor's own
// goroutines. On a router that goes on running, Close also waits, for at
// most LeaseTTL, for its partitions' consumers to end and give their
// leases back, so another process (or a CheckpointStore.Acquire of the
// checkpoint) takes them at once when it returns.
//
// Close does not wait for handlers, so a handler may call it: as with
// Subscriber.Close, a message still in a handler's hands is given up with
// its unit, which never commits (an Ack after Close is ignored, and the
// event is delivered again by the next holder of the lease) and rolls
// back once the handler answers, or LeaseTTL after Close. Under Run, the
// handlers are Run's to wait for: Close ends Run's context and returns.
// Closing the router, or the end of Run, closes the processor by itself;
// closing again returns nil.
func (p *Processor) Close() error {
	p.stop()
	p.awaitSubscriptions()
	return nil
}

// stop ends the partitions' deliveries and the membership, and waits for
// the processor's own goroutines (not for the partitions' consumers: the
// last of them calls it as it ends).
func (p *Processor) stop() {
	p.mcancel()
	p.startOnce.Do(func() { close(p.mdone) })
	<-p.mdone
}

// subscriptionStarted counts a router subscription's consumer, until
// subscriptionDone.
func (p *Processor) subscriptionStarted() {
	p.subsMu.Lock()
	p.subs++
	p.subsMu.Unlock()
}

// subscriptionDone is called once a router subscription's consumer has
// ended, its lease given back.
func (p *Processor) subscriptionDone() {
	p.subsMu.Lock()
	defer p.subsMu.Unlock()
	if p.subs--; p.subs == 0 && p.subsDone != nil {
		close(p.subsDone)
		p.subsDone = nil
	}
}

// awaitSubscriptions waits for the consumers of the router subscriptions
// to end, for at most LeaseTTL: by then a lease they did not give back
// has expired by itself.
func (p *Processor) awaitSubscriptions() {
	p.subsMu.Lock()
	if p.subs == 0 {
		p.subsMu.Unlock()
		return
	}
	if p.subsDone == nil {
		p.subsDone = make(chan struct{})
	}
	done := p.subsDone
	p.subsMu.Unlock()
	t := time.NewTimer(p.subCfg.LeaseTTL)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		p.cfg.Logger.Warn("feed: a partition's consumer did not end within LeaseTTL of Close (the store did not answer?); its lease expires by itself",
			"processor", p.cfg.Name, "lease_ttl", p.subCfg.LeaseTTL)
	}
}

// Pause stops delivery in this process without stopping the processor: its
// partitions' consumers stop delivering (a handler in flight sees its
// context end, and is waited for: its unit commits only if it was Acked,
// and its partition's lease is renewed until then, so no other process
// delivers the partition beside it) and give their leases back, while its
// router subscriptions stay open (the router's handlers keep running) and
// it stays in its membership group, so nobody delivers its share of the
// partitions meanwhile: keep pauses short. Pause returns once no partition
// of this process holds or is taking its lease, or fails with ctx's error,
// the pause then ended. While a pause is in force the leases are free: an
// operation can take them (CheckpointStore.Acquire) to move the
// checkpoints, as a projection's reset does. Since it waits for handlers in
// flight, a handler of the processor must not call it (it would wait
// LeaseTTL for itself).
//
// resume ends the pause; calling it again does nothing. Once every pause
// in force has ended, the partitions deliver again from their stored
// checkpoints as a processor just started would: the processor's
// partition record is read again and every event's count of attempts
// starts over. A paused processor stops as a running one does (Close, the
// end of its router or of Run).
func (p *Processor) Pause(ctx context.Context) (resume func(), err error) {
	p.pauseMu.Lock()
	p.paused++
	if p.paused == 1 {
		p.resumed = make(chan struct{})
		p.endRounds()
	}
	var done chan struct{}
	if p.rounds > 0 {
		if p.roundsDone == nil {
			p.roundsDone = make(chan struct{})
		}
		done = p.roundsDone
	}
	p.pauseMu.Unlock()
	var once sync.Once
	resume = func() { once.Do(p.resume) }
	if done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			resume()
			return nil, fmt.Errorf("feed: pause %s: %w", p.cfg.Name, context.Cause(ctx))
		}
	}
	return resume, nil
}

// resume ends one pause; the last lets the partitions begin new rounds.
func (p *Processor) resume() {
	p.pauseMu.Lock()
	defer p.pauseMu.Unlock()
	if p.paused--; p.paused > 0 {
		return
	}
	// Under pauseMu, so no round begins before it is done.
	p.refresh()
	p.unpaused, p.endRounds = context.WithCancel(context.Background())
	close(p.resumed)
}

// refresh has the partitions start over after a pause as a processor just
// started would: their checkpoints may have moved meanwhile (a reset), so
// every event's count of attempts starts afresh and the partition record
// is read again (what the partitions skip after a change of count may
// have been forgotten: ForgetCarriedPositions).
func (p *Processor) refresh() {
	for _, ps := range p.parts {
		ps.mu.Lock()
		ps.attempts = map[string]*attempt{}
		ps.mu.Unlock()
	}
	p.seedMu.Lock()
	defer p.seedMu.Unlock()
	if !p.seeded {
		return // the consumers read it before they deliver (awaitSeed)
	}
	ctx, cancel := context.WithTimeout(p.mctx, p.subCfg.LeaseTTL)
	defer cancel()
	if err := p.trySeedLocked(ctx); err != nil {
		// Read again, with backoff, by each partition before it delivers.
		p.seeded = false
		if p.mctx.Err() == nil {
			p.cfg.Logger.Warn("feed: could not read the processor's partition record after a pause; its partitions wait for it",
				"processor", p.cfg.Name, "error", err)
		}
	}
}

// enterRound waits while a pause is in force, then begins a round of
// delivery: it returns the round's context, which ends when a pause
// begins, and leave, to call once the round is over and its lease given
// back. paused is called when it has to wait.
func (p *Processor) enterRound(ctx context.Context, paused func()) (context.Context, func(), error) {
	for {
		p.pauseMu.Lock()
		if p.paused == 0 {
			p.rounds++
			unpaused := p.unpaused
			p.pauseMu.Unlock()
			rctx, cancel := context.WithCancel(ctx)
			stop := context.AfterFunc(unpaused, cancel)
			return rctx, func() {
				stop()
				cancel()
				p.leaveRound()
			}, nil
		}
		resumed := p.resumed
		p.pauseMu.Unlock()
		paused()
		select {
		case <-ctx.Done():
			return nil, nil, context.Cause(ctx)
		case <-resumed:
		}
	}
}

// leaveRound ends a round begun by enterRound.
func (p *Processor) leaveRound() {
	p.pauseMu.Lock()
	defer p.pauseMu.Unlock()
	if p.rounds--; p.rounds == 0 && p.roundsDone != nil {
		close(p.roundsDone)
		p.roundsDone = nil
	}
}

// partitionSubscriber is the Watermill subscriber of one partition: it
// delivers the partition's events while this process owns the partition
// and holds its lease.
type partitionSubscriber struct {
	p  *Processor
	ps *partitionState

	mu     sync.Mutex
	cancel []context.CancelFunc
	wg     sync.WaitGroup
}

func (s *partitionSubscriber) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	p := s.p
	if err := p.startMembership(); err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(p.mctx, cancel)
	s.mu.Lock()
	s.cancel = append(s.cancel, cancel)
	s.mu.Unlock()
	c := p.newConsumer(s.ps)
	p.live.Add(1)
	// Run before the consumer closes its channel, so the router's Close,
	// which waits for the channels, returns after the processor left its
	// group.
	c.onStop = p.subscriptionEnded
	p.subscriptionStarted()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer p.subscriptionDone()
		defer cancel()
		defer stop()
		c.run(cctx)
	}()
	return c.out, nil
}

// subscriptionEnded stops the processor when the last of its partitions'
// subscriptions on a router ends: the router closed (or every handler was
// stopped), so this process delivers nothing any more and must not keep
// its share of the partitions in the group.
func (p *Processor) subscriptionEnded() {
	if p.live.Add(-1) == 0 {
		// Not Close, which would wait for this very consumer.
		p.stop()
	}
}

// newConsumer builds the consumer of partition ps.
func (p *Processor) newConsumer(ps *partitionState) *consumer {
	c := &consumer{
		src:   p.reads,
		cps:   p.src.Checkpoints(),
		cfg:   &p.subCfg,
		name:  ps.name,
		owner: p.member + "/" + strconv.Itoa(ps.index),
		filter: Filter{
			Types:      p.cfg.Types,
			Categories: p.cfg.Categories,
			Partition:  Partition{Index: ps.index, Count: p.cfg.Partitions, Key: p.cfg.PartitionKey},
		},
		assigned: func() (bool, <-chan struct{}) { return p.mship.owns(ps.index, p.cfg.Partitions) },
		released: p.mship.announce,
		onState:  ps.setState,
		sweep: func(ctx context.Context, l Lease, pos events.Token) error {
			return p.sweepReplays(ctx, ps, l, pos)
		},
		nudge: ps.replayWake.C,
		enter: func(ctx context.Context) (context.Context, func(), error) {
			return p.enterRound(ctx, ps.paused)
		},
		onCommitted: func(name string, tok events.Token) {
			ps.setPosition(tok)
			if p.cfg.OnCommitted != nil {
				p.cfg.OnCommitted(name, tok)
			}
		},
		out: make(chan *message.Message),
	}
	c.ready = func(ctx context.Context) error {
		skip, err := p.awaitSeed(ctx)
		if errors.Is(err, ErrPartitionKeyChanged) {
			ps.setError(err)
		}
		c.handled = skip
		return err
	}
	c.log = p.subCfg.Logger.With("consumer", c.name, "owner", c.owner)
	c.st = newConsumerState(&p.subCfg, c.name, c.owner)
	ps.mu.Lock()
	ps.consumer = c.st
	ps.mu.Unlock()
	return c
}

func (s *partitionSubscriber) Close() error {
	s.mu.Lock()
	for _, c := range s.cancel {
		c()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// messageHandler adapts the processor's Handler to a Watermill handler with
// the gate and the failure policy around it.
func (p *Processor) messageHandler(ps *partitionState) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		stackgrow.Reserve()
		env, err := EnvelopeFromMessage(msg)
		if err != nil {
			return fmt.Errorf("feed: processor %s: %w", p.cfg.Name, err)
		}
		return p.handle(msg.Context(), ps, env)
	}
}

// handle runs one event: the gate first (before the unit is used), then
// the handler under the failure policy.
func (p *Processor) handle(ctx context.Context, ps *partitionState, env events.Envelope) error {
	// Before anything that counts, gives up or waits: a call again in a
	// unit where one failed runs nothing (see ErrUnitFailed). Giving up or
	// halting here would commit, or hold open, a unit with a failed call's
	// writes in it.
	u, _ := events.UnitFromContext(ctx)
	if ferr := ps.unitFailed(u, env.ID); ferr != nil {
		return fmt.Errorf("%w; the failure: %w", ErrUnitFailed, ferr)
	}
	if ps.mustCheckHalt() {
		if err := p.waitHalted(ctx, ps); err != nil {
			return err
		}
		ps.haltChecked()
	}
	first := UnitIndex(ctx) == 0
	// Most events succeed at once: their attempt record is only made when
	// they fail.
	a := ps.failedBefore(env.ID)
	if first && a != nil && a.failures >= p.cfg.MaxAttempts {
		return p.giveUp(ctx, ps, env, a)
	}
	if p.cfg.Gate != nil {
		g, err := p.gate(ctx, env, first)
		if err != nil {
			return err
		}
		ctx = contextWithGate(ctx, g)
	}
	err := p.call(ctx, env)
	if err == nil {
		if a != nil {
			ps.succeeded(env.ID)
		}
		return nil
	}
	ps.setUnitFailed(u, env.ID, err)
	if !first && errors.Is(err, ErrCut) {
		// A cut asked for behind the head is no failure: no attempt
		// record, no error in Status, no warning.
		return err
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		// Delivery ended under the handler (the lease was lost, or the
		// processor is stopping): whatever it returned says nothing of the
		// event, which is delivered again with its attempts untouched.
		// Counting it would halt or dead-letter an event that a slow
		// renewal interrupted. A deadline (a Timeout middleware) still
		// counts: a handler that always overruns it must end somewhere.
		return err
	}
	if a == nil {
		a = ps.attempt(env.ID)
	}
	if first {
		// Only a failure at the head of a unit counts: a failure further in
		// may come from an earlier event's writes, and the unit is cut
		// before it next time (see consumer.deliverGroup).
		a.failures++
		a.last = err.Error()
	}
	ps.setError(err)
	p.cfg.Logger.Warn("feed: handler failed; the event will be delivered again",
		"processor", p.cfg.Name, "partition", ps.index, "event_id", env.ID, "type", env.Type,
		"attempt", a.failures, "max_attempts", p.cfg.MaxAttempts, "error", err)
	return err
}

// call runs the handler, turning a panic into an error so one bad event
// cannot take the process down (Watermill's Recoverer does the same for
// the router's own handlers).
func (p *Processor) call(ctx context.Context, env events.Envelope) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("feed: handler panicked on event %s (%s): %v", env.ID, env.Type, r)
		}
	}()
	return p.handler(ctx, env)
}

// ErrUnitFailed is returned, without running the handler, for an event
// handled again in a unit of work where a handler call for it already
// failed: a retry middleware (Watermill's middleware.Retry) calls the
// handler again within one delivery, so in the same unit. The failed
// call's writes are still in the unit, which cannot undo part of itself,
// and applying the event on top of them would land its effects twice. The
// error reaches the consumer, which rolls the unit back and delivers the
// event again in a new unit under the processor's own policy
// (ProcessorConfig.MaxAttempts, the subscriber's Nack backoff): retry
// there, not in a middleware. It counts as no attempt. (A middleware that
// acknowledges a failure instead, as a poison queue does, commits the unit
// with what the failed call wrote: that is its choice, and the events
// after it in the unit run as usual.)
var ErrUnitFailed = errors.New("feed: an earlier handler call in this unit of work failed and its writes cannot be undone inside the unit; the unit is rolled back and the event delivered again in a new one (retry with the processor's policy, not a retry middleware)")

// ErrCut, returned by a handler or middleware for an event behind the head
// of its unit (UnitIndex > 0), rolls the unit back, has the consumer apply
// the events before it again and commit them by themselves, and deliver it
// again at once at the head of a unit of its own; it counts as no failure.
// Return it before anything that may wait: behind the head, the unit's
// transaction is open (on PostgreSQL it may hold a transaction id, and
// with it the read horizon of every consumer in the database), while at
// the head nothing has begun it yet. At the head it is an ordinary failure.
var ErrCut = errors.New("feed: cut the unit before this event (it is delivered again at the head of a unit of its own)")

// gate waits for the event's read models. Behind the head of a unit it
// does not wait: waiting there would hold the earlier events' open writes
// (and on PostgreSQL their transaction), so it cuts the unit instead.
//
// The gate function gets the unit: behind the head, the unit already holds
// a connection, and a read through the store would take a second one. With
// every partition doing that at once, a pool no larger than the partitions
// deadlocked, each unit holding a connection and waiting for another.
func (p *Processor) gate(ctx context.Context, env events.Envelope, first bool) (GateResult, error) {
	models, tok, err := p.cfg.Gate(ctx, env)
	if err != nil {
		return GateResult{}, fmt.Errorf("feed: gate of event %s: %w", env.ID, err)
	}
	if len(models) == 0 {
		return GateResult{Reached: true}, nil
	}
	start := time.Now()
	timeout := p.cfg.GateTimeout
	if !first {
		timeout = 0
	}
	gctx, cancel := context.WithTimeout(withoutUnit(ctx), timeout)
	reached, behind, err := p.cfg.Waiter.WaitReached(gctx, tok, models...)
	cancel()
	if ctx.Err() != nil {
		// The delivery ended during the wait: nothing is to run, and the
		// wait was not the models' fault (no "behind" to report).
		return GateResult{}, context.Cause(ctx)
	}
	if err != nil {
		return GateResult{}, fmt.Errorf("feed: gate of event %s: %w", env.ID, err)
	}
	if !reached && !first {
		return GateResult{}, ErrCut
	}
	return GateResult{Gated: true, Reached: reached, Models: models, Behind: behind, Token: tok, Waited: time.Since(start)}, nil
}

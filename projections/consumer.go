package projections

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// maxReasonLength caps the stored reason of a halt or dead letter.
const maxReasonLength = 8 << 10

// consumer is one Watermill handler: a projection's live consumer, or its
// rebuild consumer writing rebuildGen. Deliveries are sequential (the feed
// subscriber waits for each Ack), so the per-event fields need the mutex
// only against Resume and the OnCommitted callback.
type consumer struct {
	r          *Runner
	proj       *compiled
	rebuildGen int
	name       string
	// startHead is the feed head when a rebuild consumer started: from
	// there on, every event checks whether the rebuild can switch, so a
	// rebuild reflects at least the feed as it was when it started.
	startHead events.Token
	sub       *feed.Subscriber
	handler   *message.Handler

	mu sync.Mutex
	// inflight counts handle calls running; paused stops new ones, so a
	// consumer can be drained before its subscription ends (see pause).
	inflight int
	idle     chan struct{} // closed when inflight drops to 0, if waited on
	paused   chan struct{}
	// attempts counts failed attempts per event id. Other events'
	// successes do not reset it: with CommitBatch > 1 a failure rolls the
	// whole unit back and the events before the failing one succeed again
	// on every redelivery.
	attempts map[string]int
	halted   bool
	// pending holds what the deliveries of the open unit did, in feed
	// order, until the unit commits (PostgreSQL). A delivery at or before a
	// pending token means the unit was rolled back: those entries go.
	pending []pendingOutcome
}

type pendingOutcome struct {
	msg *message.Message
	tok events.Token
	outcome
}

// outcome is what a delivery did, to be announced after commit.
type outcome struct {
	updates     []Update
	deadLetters []DeadLetter
	switched    bool
	gen, oldGen int
	stale       bool
}

func (c *consumer) resetAttempts() {
	c.mu.Lock()
	c.attempts = nil
	c.mu.Unlock()
}

func (c *consumer) succeeded(eventID string) {
	c.mu.Lock()
	delete(c.attempts, eventID)
	c.mu.Unlock()
}

func (c *consumer) attempt(eventID string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.attempts == nil {
		c.attempts = map[string]int{}
	}
	c.attempts[eventID]++
	return c.attempts[eventID]
}

func (c *consumer) isHalted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.halted
}

func (c *consumer) setHalted(v bool) {
	c.mu.Lock()
	c.halted = v
	c.mu.Unlock()
}

// errPaused Nacks deliveries to a consumer being stopped.
var errPaused = errors.New("projections: consumer stopping")

func (c *consumer) enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.paused:
		return false
	default:
	}
	c.inflight++
	return true
}

func (c *consumer) leave() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inflight--
	if c.inflight == 0 && c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
}

// pause refuses new deliveries (they are Nacked without touching the unit)
// and waits until none is running, or ctx ends. Ending a subscription
// while a handler still uses the unit's transaction would let the feed roll
// it back under the handler's feet (a pgx connection is not safe for
// concurrent use).
func (c *consumer) pause(ctx context.Context) {
	c.mu.Lock()
	select {
	case <-c.paused:
	default:
		close(c.paused)
	}
	var idle chan struct{}
	if c.inflight > 0 {
		if c.idle == nil {
			c.idle = make(chan struct{})
		}
		idle = c.idle
	}
	c.mu.Unlock()
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
		}
	}
}

// handle is the Watermill handler. nil Acks (the unit commits), an error
// Nacks (the unit rolls back and the event comes again after a backoff).
func (c *consumer) handle(msg *message.Message) error {
	if !c.enter() {
		return errPaused
	}
	defer c.leave()
	ctx := msg.Context()
	env, err := feed.EnvelopeFromMessage(msg)
	if err != nil {
		c.r.log.Error("projections: undecodable feed message", "consumer", c.name, "error", err)
		return err
	}
	h := c.proj.handlers[env.Type]
	checkSwitch := c.rebuildGen != 0 && !env.Token.Before(c.startHead)
	if h == nil && !checkSwitch {
		return nil // not ours: the checkpoint moves past it
	}
	if c.isHalted() {
		if err := c.awaitRunning(ctx); err != nil {
			return err
		}
	}
	a := applyArgs{proj: c.proj, rebuildGen: c.rebuildGen, env: env, handler: h, checkSwitch: checkSwitch}
	res, err := c.r.be.apply(ctx, a)
	switch {
	case err == nil:
		c.succeeded(env.ID)
		c.done(msg, env.Token, outcome{updates: res.updates, switched: res.switched, gen: res.gen, oldGen: res.oldGen, stale: res.stale})
		return nil
	case errors.Is(err, errGenHalted):
		// Halted by this or another process: wait for Resume on the next
		// delivery, without holding a unit open meanwhile.
		c.setHalted(true)
		return err
	case ctx.Err() != nil:
		return err
	case h == nil:
		c.r.log.Warn("projections: rebuild switch check failed, retrying", "consumer", c.name, "error", err)
		return err
	}
	return c.failed(ctx, msg, a, res.gen, err)
}

// failed counts a failed attempt and, after MaxAttempts, applies the
// failure policy.
func (c *consumer) failed(ctx context.Context, msg *message.Message, a applyArgs, gen int, err error) error {
	env := a.env
	n := c.attempt(env.ID)
	err = handlerError(c.proj.name, env, err)
	log := c.r.log.With("projection", c.proj.name, "consumer", c.name, "event_id", env.ID, "type", env.Type,
		"stream_id", env.StreamID, "version", env.Version, "attempt", n, "max_attempts", c.r.cfg.MaxAttempts)
	if n < c.r.cfg.MaxAttempts {
		log.Warn("projections: handler failed, retrying after a backoff", "error", err)
		return err
	}
	reason := err.Error()
	if len(reason) > maxReasonLength {
		reason = reason[:maxReasonLength]
	}
	if c.r.cfg.OnFailure == DeadLetterOnFailure {
		dl, stored, derr := c.r.be.deadLetter(ctx, a, reason, n)
		if derr != nil {
			log.Error("projections: storing the dead letter failed, retrying", "error", errors.Join(err, derr))
			return err
		}
		c.succeeded(env.ID)
		var o outcome
		if stored {
			log.Error("projections: event dead-lettered, continuing", "error", err)
			o.deadLetters = []DeadLetter{dl}
		}
		c.done(msg, env.Token, o)
		return nil
	}
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	if herr := c.r.be.halt(hctx, c.proj.name, gen, env.ID, reason); herr != nil {
		log.Error("projections: marking the projection halted failed, retrying", "error", errors.Join(err, herr))
		return err
	}
	c.setHalted(true)
	log.Error("projections: projection halted: fix the cause, then call Runner.Resume", "generation", gen, "error", err)
	if c.r.cfg.OnHalt != nil {
		c.r.cfg.OnHalt(&HaltedError{Projection: c.proj.name, Generation: gen, EventID: env.ID, Reason: reason})
	}
	c.r.changed.Notify()
	return err
}

// awaitRunning blocks while the consumer's generation is halted: until a
// Resume (or a switch) in this process, a poll that finds one made
// elsewhere, or the end of the delivery.
func (c *consumer) awaitRunning(ctx context.Context) error {
	poll := time.NewTicker(c.r.cfg.StatusPollInterval)
	defer poll.Stop()
	for {
		changed := c.r.changed.C()
		running, err := c.r.be.running(ctx, c.proj.name, c.rebuildGen)
		if err == nil && running {
			c.setHalted(false)
			return nil
		}
		select {
		case <-changed:
		case <-poll.C:
		case <-c.paused:
			return errPaused
		case <-ctx.Done():
			return fmt.Errorf("projections: %q: %w (delivery ended while halted)", c.name, ErrHalted)
		}
	}
}

// done records what a successful delivery did. In memory it took effect
// already and is announced at once; on PostgreSQL it takes effect when the
// unit commits, so it waits for committed (and is dropped if the unit is
// rolled back and the event delivered again). Runs of one message
// (Watermill's Duplicator) add up.
func (c *consumer) done(msg *message.Message, tok events.Token, o outcome) {
	if !c.r.be.appliesAtCommit() {
		c.announce(tok, o)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, p := range c.pending {
		if p.tok == tok && p.msg == msg {
			c.pending[i].outcome = p.merge(o)
			return
		}
		if !p.tok.Before(tok) {
			c.pending = c.pending[:i] // rolled back: delivered again
			break
		}
	}
	c.pending = append(c.pending, pendingOutcome{msg: msg, tok: tok, outcome: o})
}

func (o outcome) merge(p outcome) outcome {
	o.updates = append(o.updates, p.updates...)
	o.deadLetters = append(o.deadLetters, p.deadLetters...)
	if p.switched {
		o.switched, o.gen, o.oldGen = true, p.gen, p.oldGen
	}
	o.stale = o.stale || p.stale
	return o
}

// committed is the feed subscriber's OnCommitted: the unit ending at tok
// is durable.
func (c *consumer) committed(_ string, tok events.Token) {
	if c.rebuildGen == 0 && c.r.cfg.Tracker != nil {
		c.r.cfg.Tracker.Advance(c.proj.name, tok)
	}
	if c.r.cfg.OnCommitted != nil {
		c.r.cfg.OnCommitted(c.name, tok)
	}
	c.mu.Lock()
	n := 0
	for n < len(c.pending) && !c.pending[n].tok.After(tok) {
		n++
	}
	done := c.pending[:n:n]
	c.pending = append([]pendingOutcome(nil), c.pending[n:]...)
	c.mu.Unlock()
	for _, p := range done {
		c.announce(p.tok, p.outcome)
	}
}

// announce tells hooks what a committed delivery did.
func (c *consumer) announce(tok events.Token, o outcome) {
	if c.rebuildGen == 0 && c.r.cfg.OnUpdate != nil {
		for _, u := range o.updates {
			c.r.cfg.OnUpdate(u)
		}
	}
	if c.r.cfg.OnDeadLetter != nil {
		for _, dl := range o.deadLetters {
			c.r.cfg.OnDeadLetter(dl)
		}
	}
	if o.switched {
		c.r.switched(c.proj.name, o.gen, o.oldGen, tok)
	}
	if o.switched || o.stale {
		c.r.sweepLater(c.proj.name)
		c.r.stopConsumerLater(c)
	}
}

// sweepLater drops the generations a switch left behind, off the delivery
// path.
func (r *Runner) sweepLater(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.state != stateRunning {
		return
	}
	r.bg.Go(func() {
		ctx, cancel := context.WithTimeout(r.runCtx, opTimeout)
		defer cancel()
		if err := r.be.sweep(ctx, name); err != nil {
			r.log.Warn("projections: dropping the old generation failed (the next Start retries)", "projection", name, "error", err)
		}
		r.changed.Notify()
	})
}

package feed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/converge-es/converge/events"
)

// consumer is one Subscribe call: it acquires the lease of its name, reads
// the feed from the lease's position and delivers events one at a time,
// until its context ends or the Source is closed.
type consumer struct {
	src   Source
	cps   CheckpointStore
	cfg   *SubscriberConfig
	name  string
	owner string
	// filter is what the consumer reads: a category, types, a partition.
	filter Filter
	// handled, when set, reports events handled already elsewhere (by
	// the partitions of a processor's previous count): they are skipped
	// as if the filter had left them out.
	handled func(events.Envelope) bool
	// ready, when set, runs at the start of each round (see enter),
	// before its first lease is taken, and may set handled; an error ends
	// the consumer before it delivers anything more.
	ready func(context.Context) error
	// assigned, when set, says whether this process should hold the lease
	// now (a processor's partition owned by this member), and gives a
	// channel closed when that may have changed.
	assigned func() (bool, <-chan struct{})
	// released, when set, runs after the consumer gave its lease up (the
	// partition moved to another member, or delivery here stopped), so the
	// member that should hold it hears of it at once: otherwise it may have
	// tried the lease before the release and wait a RenewInterval.
	released func(context.Context)
	// onState and onCommitted report progress to a processor.
	onState     func(PartitionState)
	onCommitted func(name string, tok events.Token)
	// sweep, when set, runs between reads on the delivery goroutine, under
	// the lease, at the position committed so far (a processor replays
	// dead letters there); nudge gives a channel closed when it has work,
	// which wakes an idle consumer.
	sweep func(ctx context.Context, lease Lease, pos events.Token) error
	nudge func() <-chan struct{}
	out   chan *message.Message
	// direct, when set, is called for each event in place of sending a
	// message on out (Processor.Run): an error is a Nack.
	direct func(ctx context.Context, env events.Envelope) error
	st     *consumerState
	log    *slog.Logger
	// onStop, when set, runs when the consumer ends, before its channel
	// is closed (a processor stops when its last partition's ends).
	onStop func()
	// closing is closed when the subscription ends (the context given to
	// run ends: Subscribe's, or Subscriber.Close or Processor.Close): a
	// message still in a handler's hands is then given up rather than
	// waited for (see abandon). Set by run.
	closing <-chan struct{}
	// enter, when set, is called before each round of taking the lease
	// and delivering under it (Processor.Pause): it waits while delivery
	// is paused, and returns the round's context, which ends when a pause
	// begins, and a func to call once the round is over and its lease
	// given back. It fails only when ctx ends.
	enter func(ctx context.Context) (context.Context, func(), error)
}

// failure records a failed call to the Source. Only the first failure of a
// degraded spell is a warning: while the database is down every retry fails
// the same way, and one line per retry would bury everything else. The
// rest go to debug, and recovered reports the spell when it ends.
func (c *consumer) failure(msg string, err error, args ...any) {
	if c.st.failed(err) {
		c.log.Warn(msg+" (further failures are logged at debug level until it recovers)", append([]any{"error", err}, args...)...)
		return
	}
	c.log.Debug(msg, append([]any{"error", err}, args...)...)
}

// recovered records a successful call to the Source and reports the end
// of a degraded spell once.
func (c *consumer) recovered() {
	if since, n := c.st.ok(); !since.IsZero() {
		c.log.Info("feed: the source answers again", "degraded_for", c.cfg.Clock.Now().Sub(since).Round(time.Millisecond), "failed_calls", n)
	}
}

func (c *consumer) state(s PartitionState) {
	if c.onState != nil {
		c.onState(s)
	}
}

// awaitAssignment blocks until this process should hold the lease. It
// fails only when ctx ends.
func (c *consumer) awaitAssignment(ctx context.Context) error {
	if c.assigned == nil {
		return nil
	}
	for {
		ok, changed := c.assigned()
		if ok {
			return nil
		}
		c.state(PartitionIdle)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// errUnassigned ends delivery when the membership moved the partition to
// another process: the lease is released so it takes over at once.
var errUnassigned = errors.New("feed: partition assigned to another member")

// readAhead is a read of the feed running while the previous page is
// delivered: a consumer that is behind then waits for neither the database
// nor its handler alone.
type readAhead struct {
	from   events.Token
	wake   <-chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
	batch  Batch
	err    error
}

func (c *consumer) readAhead(ctx context.Context, from events.Token) *readAhead {
	rctx, cancel := context.WithTimeout(ctx, c.cfg.LeaseTTL)
	r := &readAhead{from: from, wake: c.src.Wake(), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.batch, r.err = c.src.ReadFeed(rctx, from, c.filter, c.cfg.BatchSize)
	}()
	return r
}

// result waits for the read.
func (r *readAhead) result() (Batch, <-chan struct{}, error) {
	<-r.done
	r.cancel()
	return r.batch, r.wake, r.err
}

// drop abandons the read (the position moved elsewhere, or delivery
// stops) and waits for its goroutine.
func (r *readAhead) drop() {
	if r == nil {
		return
	}
	r.cancel()
	<-r.done
}

// errRedeliver makes the consumer read again from its last checkpoint
// after a backoff.
var errRedeliver = errors.New("feed: redeliver")

// run alternates between acquiring the lease and delivering under it. A
// consumer that lost its lease stands by again. A pause (see enter) ends
// the round: the lease is given back, and a new round begins once the
// pause is over.
func (c *consumer) run(ctx context.Context) {
	c.closing = ctx.Done()
	defer close(c.out)
	if c.onStop != nil {
		defer c.onStop()
	}
	defer c.st.setLease(LeaseStopped)
	for {
		rctx, leave := ctx, func() {}
		if c.enter != nil {
			var err error
			if rctx, leave, err = c.enter(ctx); err != nil {
				return
			}
		}
		c.round(rctx)
		paused := rctx.Err() != nil
		leave()
		if ctx.Err() != nil || !paused {
			// Stopped, or ended by itself (the Source closed, the
			// processor refused to start): not a pause.
			return
		}
	}
}

// round gets the consumer ready, then takes the lease and delivers under
// it, standing by again after losing it, until ctx ends, the Source is
// closed or ready fails.
func (c *consumer) round(ctx context.Context) {
	if c.ready != nil {
		if err := c.ready(ctx); err != nil {
			return
		}
	}
	for {
		if err := c.awaitAssignment(ctx); err != nil {
			return
		}
		lease, err := c.acquire(ctx)
		if errors.Is(err, errUnassigned) {
			continue
		}
		if err != nil {
			return
		}
		if !c.hold(ctx, lease) {
			return
		}
	}
}

// acquire takes the lease, standing by while another consumer holds it. It
// fails only when ctx is done or the Source is closed.
func (c *consumer) acquire(ctx context.Context) (Lease, error) {
	standby := false
	for {
		// A membership change (a member gave this partition up, say) ends
		// the wait below early. Taken before the attempt, so a change
		// during it is not missed.
		var changed <-chan struct{}
		if c.assigned != nil {
			_, changed = c.assigned()
		}
		// Not cancelled with ctx: PostgreSQL finishes a statement its
		// client gave up on, so an acquire abandoned at shutdown could
		// take the lease with nobody left to release it, and the
		// partition would wait a whole TTL for its next holder. Waiting
		// for it (at most a TTL, as the release waits) tells us what to
		// give back.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.LeaseTTL)
		lease, err := c.cps.Acquire(actx, c.name, c.owner, c.cfg.LeaseTTL)
		cancel()
		if err == nil && ctx.Err() != nil {
			c.release(ctx, lease)
			return Lease{}, ctx.Err()
		}
		switch {
		case err == nil:
			c.state(PartitionActive)
			c.recovered()
			c.log.Info("feed: lease acquired, delivering", "generation", lease.Generation, "position", lease.Position.String())
			c.st.leaseChanged(LeaseAcquired, lease, nil)
			return lease, nil
		case ctx.Err() != nil:
			return Lease{}, ctx.Err()
		case errors.Is(err, events.ErrClosed):
			c.log.Info("feed: source closed, ending subscription", "error", err)
			return Lease{}, err
		case errors.Is(err, ErrLeaseHeld):
			c.state(PartitionStandby)
			c.recovered()
			c.st.setLease(LeaseStandingBy)
			if !standby {
				c.log.Info("feed: another consumer holds the lease, standing by", "retry_every", c.cfg.RenewInterval)
				standby = true
			}
		default:
			c.state(PartitionDegraded)
			c.failure("feed: acquire lease failed, retrying", err, "retry_in", c.cfg.RenewInterval)
		}
		if c.assigned != nil {
			if ok, _ := c.assigned(); !ok {
				return Lease{}, errUnassigned
			}
		}
		if !sleepOrWake(ctx, c.cfg.RenewInterval, changed) {
			return Lease{}, ctx.Err()
		}
	}
}

// hold delivers under lease until ctx ends, the lease is lost or the Source
// is closed, then releases the lease unless it was lost. It reports whether
// the consumer should try to acquire again.
func (c *consumer) hold(ctx context.Context, lease Lease) (again bool) {
	lctx, stop := context.WithCancelCause(ctx)
	// Renewals outlive ctx: a delivery ended under a handler (a pause, the
	// partition moving) still waits for the message it holds, and a lease
	// left to expire meanwhile would let another process deliver the
	// partition beside that handler. They end when delivery has, or with
	// the lease.
	rctx, endRenewals := context.WithCancel(context.WithoutCancel(ctx))
	var lost error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if lost = c.renew(rctx, lease); lost != nil {
			stop(lost)
		}
	}()
	if c.assigned != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.watchAssignment(lctx, stop)
		}()
	}
	err := c.deliverFrom(lctx, lease)
	stop(err)
	endRenewals()
	wg.Wait()

	// A loss while delivery waited for a handler after ctx ended is not
	// lctx's cause, which ctx's end set first.
	cause := lost
	if cause == nil {
		cause = context.Cause(lctx)
	}
	closed := errors.Is(err, events.ErrClosed) || errors.Is(cause, events.ErrClosed)
	if errors.Is(cause, ErrLeaseLost) {
		c.log.Warn("feed: lease lost, standing by", "generation", lease.Generation, "error", cause)
		c.st.leaseChanged(LeaseLost, lease, cause)
		return ctx.Err() == nil
	}
	if !closed {
		c.release(ctx, lease)
		c.st.leaseChanged(LeaseReleased, lease, nil)
		if c.released != nil {
			c.released(ctx)
		}
	}
	return ctx.Err() == nil && !closed
}

// release gives lease up, even when ctx has ended; a failure is only
// logged, as the lease then expires by itself.
func (c *consumer) release(ctx context.Context, lease Lease) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.LeaseTTL)
	defer cancel()
	if err := c.cps.Release(rctx, lease); err != nil {
		c.log.Warn("feed: release lease failed (a standby takes over when it expires)", "error", err, "lease_ttl", c.cfg.LeaseTTL)
	}
}

// watchAssignment stops delivery when the partition moves to another
// member, so the lease is released and the new owner takes over at once.
func (c *consumer) watchAssignment(ctx context.Context, stop context.CancelCauseFunc) {
	for {
		ok, changed := c.assigned()
		if !ok {
			c.log.Info("feed: partition assigned to another member; releasing the lease")
			stop(errUnassigned)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

// renew extends the lease every RenewInterval until ctx ends, and then
// returns nil. When the lease is lost, or renewals have failed for a whole
// LeaseTTL (another consumer may hold it by now), it returns why, wrapping
// ErrLeaseLost (or events.ErrClosed when the Source was closed).
func (c *consumer) renew(ctx context.Context, lease Lease) error {
	t := time.NewTicker(c.cfg.RenewInterval)
	defer t.Stop()
	lastOK := c.cfg.Clock.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, c.cfg.RenewInterval)
		err := c.cps.Renew(rctx, lease, c.cfg.LeaseTTL)
		cancel()
		switch {
		case err == nil:
			c.recovered()
			lastOK = c.cfg.Clock.Now()
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrLeaseLost), errors.Is(err, events.ErrClosed):
			return err
		default:
			failing := c.cfg.Clock.Now().Sub(lastOK)
			if failing >= c.cfg.LeaseTTL {
				c.st.failed(err)
				return fmt.Errorf("%w: renewals have failed for %s, longer than LeaseTTL: %w", ErrLeaseLost, failing, err)
			}
			c.failure("feed: renew lease failed, retrying", err, "failing_for", failing)
		}
	}
}

// deliverFrom reads the feed after the lease's position and delivers each
// event, waiting for new ones in between. It returns why it stopped.
func (c *consumer) deliverFrom(ctx context.Context, lease Lease) error {
	pos := lease.Position
	pending := backoff{min: c.cfg.PendingBackoffMin, max: c.cfg.PendingBackoffMax}
	retry := backoff{min: c.cfg.PendingBackoffMin, max: c.cfg.FallbackPollInterval}
	nack := nackStreak{b: backoff{min: c.cfg.NackBackoffMin, max: c.cfg.NackBackoffMax}}
	// cut bounds the next unit after a Nack behind its head: the events
	// before the failing one are committed by themselves first, and the
	// failing one then heads a unit of its own, where its failures count.
	cut := 0
	// ahead is the next page, read while this one is delivered.
	var ahead *readAhead
	defer func() { ahead.drop() }()
	for {
		// Take the wake channel before reading, so an append between the
		// read and the wait is not missed.
		wake := c.src.Wake()
		var nudge <-chan struct{}
		if c.sweep != nil {
			nudge = c.nudge()
			if err := c.sweep(ctx, lease, pos); err != nil {
				return err
			}
		}
		var (
			batch Batch
			err   error
		)
		if ahead != nil && ahead.from == pos {
			// Every event of the last page was delivered: its successor
			// is read already. Its wake channel was taken before its read.
			batch, wake, err = ahead.result()
		} else {
			ahead.drop()
			rctx, cancel := context.WithTimeout(ctx, c.cfg.LeaseTTL)
			batch, err = c.src.ReadFeed(rctx, pos, c.filter, c.cfg.BatchSize)
			cancel()
		}
		ahead = nil
		if err == nil && len(batch.Events) == c.cfg.BatchSize {
			// A full page: more is probably there, so read it while this
			// one is delivered.
			ahead = c.readAhead(ctx, batch.Events[len(batch.Events)-1].Token)
		}
		switch {
		case ctx.Err() != nil:
			return context.Cause(ctx)
		case errors.Is(err, events.ErrClosed):
			c.log.Info("feed: source closed, ending subscription", "error", err)
			return err
		case err != nil:
			d := retry.next()
			c.failure("feed: read failed, retrying", err, "retry_in", d)
			if !sleep(ctx, d) {
				return context.Cause(ctx)
			}
			continue
		}
		retry.reset()
		c.recovered()
		if c.handled != nil {
			batch = c.skipHandled(batch)
		}

		evs := batch.Events
		for len(evs) > 0 {
			if !evs[0].Token.After(pos) {
				// A Source bug; committing it would move the checkpoint back.
				c.log.Error("feed: source returned an event at or before the position read from; skipping it",
					"event_id", evs[0].ID, "token", evs[0].Token.String(), "position", pos.String())
				evs = evs[1:]
				continue
			}
			size := min(len(evs), c.cfg.CommitBatch)
			if cut > 0 {
				size, cut = min(size, cut), 0
			}
			group := evs[:size]
			n, nacked, err := c.deliverGroup(ctx, lease, pos, group)
			if n > 0 {
				pos = group[n-1].Token
			}
			if errors.Is(err, errRedeliver) && nacked > 0 {
				// Not the head's fault: redeliver at once, the head's
				// part alone.
				cut = nacked
				break
			}
			if errors.Is(err, errRedeliver) {
				// Everything after pos is read again, so the events of the
				// rolled-back unit come back in order.
				nack.failed(group[n].ID)
				d := nack.next()
				c.log.Debug("feed: redelivering from the last checkpoint", "event_id", group[n].ID, "retry_in", d)
				if !sleep(ctx, d) {
					return context.Cause(ctx)
				}
				break
			}
			if err != nil {
				return err
			}
			nack.succeeded()
			evs = evs[n:]
		}
		if len(batch.Events) == 0 && batch.ScannedTo.After(pos) {
			// The read looked past events this consumer does not handle:
			// move the checkpoint over them in one write instead of a unit
			// per event, then read on from there.
			moved, err := c.advance(ctx, lease, batch.ScannedTo)
			if err != nil {
				return err
			}
			if moved {
				pos = batch.ScannedTo
				pending.reset()
				continue
			}
		}
		switch {
		case len(batch.Events) > 0:
			pending.reset()
		case batch.Pending:
			// Committed events wait behind an older open transaction. It is
			// usually another append or a consumer's unit, whose commit wakes
			// us; the backoff covers transactions that announce nothing.
			t := time.NewTimer(pending.next())
			select {
			case <-ctx.Done():
				t.Stop()
				return context.Cause(ctx)
			case <-wake:
			case <-t.C:
			}
			t.Stop()
		default:
			pending.reset()
			if err := c.wait(ctx, wake, nudge); err != nil {
				return err
			}
		}
	}
}

// skipHandled drops the events of batch that c.handled reports. Its
// ScannedTo stays: it covers every matching event up to it, skipped ones
// included, so a batch left empty moves the checkpoint past them as past
// filtered events.
func (c *consumer) skipHandled(batch Batch) Batch {
	first := slices.IndexFunc(batch.Events, c.handled)
	if first < 0 {
		return batch // the common case once past the old positions
	}
	kept := slices.Clone(batch.Events[:first])
	for _, env := range batch.Events[first+1:] {
		if !c.handled(env) {
			kept = append(kept, env)
		}
	}
	batch.Events = kept
	return batch
}

// advance moves the checkpoint to pos outside any unit. It reports whether
// it did; a failure other than a lost lease or a closed Source is only
// logged, since the events in between are simply read again.
func (c *consumer) advance(ctx context.Context, lease Lease, pos events.Token) (bool, error) {
	actx, cancel := context.WithTimeout(ctx, c.cfg.LeaseTTL)
	defer cancel()
	err := c.cps.Advance(actx, lease, pos)
	switch {
	case err == nil:
		if c.cfg.OnCommitted != nil {
			c.cfg.OnCommitted(c.name, pos)
		}
		if c.onCommitted != nil {
			c.onCommitted(c.name, pos)
		}
		return true, nil
	case ctx.Err() != nil:
		return false, context.Cause(ctx)
	case errors.Is(err, ErrLeaseLost), errors.Is(err, events.ErrClosed):
		return false, err
	}
	c.log.Warn("feed: advance past unmatched events failed", "error", err, "position", pos.String())
	return false, nil
}

// wait blocks until wake fires, push turns unhealthy (then it polls every
// FallbackPollInterval), SafetyPollInterval passes, or ctx ends.
func (c *consumer) wait(ctx context.Context, wake, nudge <-chan struct{}) error {
	safety := time.NewTimer(c.cfg.SafetyPollInterval)
	defer safety.Stop()
	poll := time.NewTicker(c.cfg.FallbackPollInterval)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-wake:
			return nil
		case <-nudge:
			return nil
		case <-safety.C:
			return nil
		case <-poll.C:
			if !c.src.PushHealthy() {
				return nil
			}
		}
	}
}

// deliverGroup delivers events in one unit, one message at a time, and
// commits the unit after the last Ack. It returns how many events it
// committed: all of them, or none with errRedeliver (a Nack, or a failed
// begin or commit: redeliver from the first) or with an error that stops
// delivery (ctx ended, lease lost, Source closed). When Close races an Ack,
// the events Acked so far still commit and their count is returned.
func (c *consumer) deliverGroup(ctx context.Context, lease Lease, from events.Token, group []events.Envelope) (n, nackedAt int, err error) {
	bctx, cancel := context.WithTimeout(ctx, c.cfg.LeaseTTL)
	unit, err := c.cps.Begin(bctx)
	cancel()
	switch {
	case ctx.Err() != nil:
		if err == nil {
			c.rollback(ctx, unit)
		}
		return 0, 0, context.Cause(ctx)
	case errors.Is(err, events.ErrClosed):
		return 0, 0, err
	case err != nil:
		c.failure("feed: begin unit failed", err, "event_id", group[0].ID)
		return 0, 0, errRedeliver
	}
	msgCtx, cancelMsgs := context.WithCancel(ctx)
	defer cancelMsgs()
	uctx := contextWithUnitEvents(contextWithDelivery(unit.Context(msgCtx), lease, c.handled != nil), group)

	deliver := c.deliverMessages
	if c.direct != nil {
		deliver = c.deliverDirect
	}
	if n, nacked, ended, err := deliver(ctx, uctx, unit, lease, from, group); ended {
		return n, nacked, err
	}
	if err := c.commit(ctx, unit, lease, from, group[len(group)-1]); err != nil {
		return 0, 0, err
	}
	return len(group), 0, nil
}

// deliverMessages sends each event of group to the router as a message
// and waits for its answer. It returns deliverGroup's results and true
// when delivery of the unit ends there (a Nack, ctx ended), or false when
// every event was Acked and the unit may commit.
func (c *consumer) deliverMessages(ctx, uctx context.Context, unit Unit, lease Lease, from events.Token, group []events.Envelope) (int, int, bool, error) {
	for i, env := range group {
		msg, decodeErr := newMessage(env)
		if decodeErr != nil {
			c.log.Error("feed: delivering undecodable payload as stored", "error", decodeErr)
		}
		msg.SetContext(contextWithUnitIndex(uctx, i))
		select {
		case c.out <- msg:
		case <-ctx.Done():
			n, err := c.settleAtClose(ctx, unit, lease, from, group[:i])
			return n, 0, true, err
		}
		select {
		case <-msg.Acked():
		case <-msg.Nacked():
			c.rollback(ctx, unit)
			return 0, i, true, errRedeliver
		case <-ctx.Done():
			// An Ack given before the end counts, even when the select
			// above picked the end.
			if acked(msg) {
				n, err := c.settleAtClose(ctx, unit, lease, from, group[:i+1])
				return n, 0, true, err
			}
			if closedChan(c.closing) {
				c.abandon(ctx, unit, msg, env)
				return 0, 0, true, context.Cause(ctx)
			}
			// Delivery ended while the subscription goes on (a pause, the
			// lease lost, the partition moved). The message's context is
			// cancelled with ctx, so a handler answers soon. Wait for it
			// (bounded; hold renews the lease meanwhile) before settling:
			// until it answers, the handler may be using the unit's
			// transaction (on PostgreSQL, its connection), which a
			// rollback would use at the same time. An Ack that raced the
			// end of the context still counts.
			t := time.NewTimer(c.cfg.LeaseTTL)
			defer t.Stop()
			select {
			case <-msg.Acked():
				n, err := c.settleAtClose(ctx, unit, lease, from, group[:i+1])
				return n, 0, true, err
			case <-msg.Nacked():
				// The unit holds whatever the failed handler wrote before
				// it failed, so the events acked before it cannot commit
				// without it: everything rolls back and is delivered
				// again.
				c.rollback(ctx, unit)
			case <-c.closing:
				if acked(msg) {
					n, err := c.settleAtClose(ctx, unit, lease, from, group[:i+1])
					return n, 0, true, err
				}
				c.abandon(ctx, unit, msg, env)
			case <-t.C:
				// The handler may still be running a statement on the
				// unit's transaction, beside which a rollback would run.
				c.log.Warn("feed: handler did not answer within LeaseTTL after its context ended; aborting its unit", "event_id", env.ID)
				c.abort(ctx, unit)
			}
			return 0, 0, true, context.Cause(ctx)
		}
	}
	return 0, 0, false, nil
}

// abandon gives up on msg, which its handler had not answered when the
// subscription ended (its Subscribe context, or Subscriber.Close). Close
// does not wait for handlers (one may be the caller, waiting in turn for
// Close), nor does a Watermill subscription whose context ended (the
// holder of the message may never answer), so the unit cannot commit:
// the consumer stops at once and releases its lease, and a later Ack is
// ignored, the event being delivered again by the next holder. Nor is
// the unit rolled back at once, under a handler that may still be using
// its transaction (on PostgreSQL, its connection): on a goroutine of its
// own it waits for the handler's answer, then rolls back, or for
// LeaseTTL, then aborts the unit (see abort), the handler still running.
// Until then a unit that wrote keeps what it locked, and so holds back
// the next holder's writes to the same rows and streams.
func (c *consumer) abandon(ctx context.Context, unit Unit, msg *message.Message, env events.Envelope) {
	c.log.Info("feed: subscription ended while a handler holds a message; its unit will not commit and rolls back once the handler answers",
		"event_id", env.ID)
	go func() {
		t := time.NewTimer(c.cfg.LeaseTTL)
		defer t.Stop()
		select {
		case <-msg.Acked():
		case <-msg.Nacked():
		case <-t.C:
			c.log.Warn("feed: handler did not answer within LeaseTTL after its subscription ended; aborting its unit", "event_id", env.ID)
			c.abort(ctx, unit)
			return
		}
		c.rollback(ctx, unit)
	}()
}

// acked reports whether msg was Acked already.
func acked(msg *message.Message) bool {
	select {
	case <-msg.Acked():
		return true
	default:
		return false
	}
}

// closedChan reports whether ch is closed; a nil ch never is.
func closedChan(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// deliverDirect calls the processor's handler for each event of group
// (Processor.Run), with deliverMessages' results.
func (c *consumer) deliverDirect(ctx, uctx context.Context, unit Unit, lease Lease, from events.Token, group []events.Envelope) (int, int, bool, error) {
	for i, env := range group {
		if err := c.direct(contextWithUnitIndex(uctx, i), env); err != nil {
			c.rollback(ctx, unit)
			if ctx.Err() != nil {
				return 0, 0, true, context.Cause(ctx)
			}
			return 0, i, true, errRedeliver
		}
		if ctx.Err() != nil {
			n, err := c.settleAtClose(ctx, unit, lease, from, group[:i+1])
			return n, 0, true, err
		}
	}
	return 0, 0, false, nil
}

// settleAtClose commits the events acked before ctx ended, or rolls back
// when there are none, and reports why delivery stops.
func (c *consumer) settleAtClose(ctx context.Context, unit Unit, lease Lease, from events.Token, acked []events.Envelope) (int, error) {
	if len(acked) == 0 {
		c.rollback(ctx, unit)
		return 0, context.Cause(ctx)
	}
	if err := c.commit(ctx, unit, lease, from, acked[len(acked)-1]); err != nil && !errors.Is(err, errRedeliver) {
		return 0, err
	} else if err != nil {
		return 0, context.Cause(ctx)
	}
	return len(acked), context.Cause(ctx)
}

// commit stores env's token as the checkpoint together with the handler's
// writes. It runs even when ctx has just ended (Close racing an Ack).
func (c *consumer) commit(ctx context.Context, unit Unit, lease Lease, from events.Token, env events.Envelope) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.LeaseTTL)
	defer cancel()
	err := unit.Commit(cctx, Move{Lease: lease, Position: env.Token, From: &from})
	if err == nil {
		if c.cfg.OnCommitted != nil {
			c.cfg.OnCommitted(c.name, env.Token)
		}
		if c.onCommitted != nil {
			c.onCommitted(c.name, env.Token)
		}
		return nil
	}
	c.rollback(ctx, unit)
	switch {
	case errors.Is(err, ErrLeaseLost):
		return err
	case errors.Is(err, events.ErrClosed):
		return err
	}
	c.st.failed(err)
	c.log.Error("feed: commit failed, redelivering the event", "event_id", env.ID, "error", err)
	return errRedeliver
}

// rollback discards the handler's writes; a failure is only logged, since
// an uncommitted unit commits nothing anyway.
func (c *consumer) rollback(ctx context.Context, unit Unit) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.LeaseTTL)
	defer cancel()
	if err := unit.Rollback(rctx); err != nil {
		c.log.Warn("feed: roll back unit failed", "error", err)
	}
}

// abort ends a unit whose handler has not answered and may still be using
// it. A rollback would run on the unit's connection beside the handler's
// statements, and hand the connection back to the pool under it; an
// Aborter ends the unit without that. A unit that is no Aborter holds
// nothing a handler could race on, and is rolled back. A failure is only
// logged: the unit has ended anyway and never commits.
func (c *consumer) abort(ctx context.Context, unit Unit) {
	a, ok := unit.(Aborter)
	if !ok {
		c.rollback(ctx, unit)
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.LeaseTTL)
	defer cancel()
	if err := a.Abort(actx); err != nil {
		c.log.Warn("feed: abort unit failed", "error", err)
	}
}

// nackStreak grows the redelivery backoff while the same event keeps
// failing, and starts over once it (or another) commits.
type nackStreak struct {
	b    backoff
	last string
}

func (n *nackStreak) failed(eventID string) {
	if eventID != n.last {
		n.b.reset()
		n.last = eventID
	}
}

func (n *nackStreak) next() time.Duration { return n.b.next() }

func (n *nackStreak) succeeded() {
	n.b.reset()
	n.last = ""
}

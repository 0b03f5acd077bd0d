package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/rowjson"
)

// commandNamespace seeds the name-based UUIDs of commands and timer
// firings. Changing it would break the deduplication of retried steps.
var commandNamespace = uuid.MustParse("0c4f1f5e-6a57-4d0b-9d0e-3b8e7a2f9c11")

// commandID is the id of the index-th command of step seq of an instance
// started by the message origin.
func commandID(saga, id, origin string, seq int64, index int) string {
	return uuid.NewSHA1(commandNamespace, fmt.Appendf(nil, "cmd\x00%s\x00%s\x00%s\x00%d\x00%d", saga, id, origin, seq, index)).String()
}

// apply runs one message through an unblocked (or draining) instance: it
// ignores it when the instance has ended or the timer is stale, parks it
// when its read models are behind, or runs the handler and commits the
// step's effects. prev is the parked record when the driver runs the step
// again.
func (e *Engine) apply(ctx context.Context, u feed.Unit, t target, in *instance, env events.Envelope, v any, g gateOutcome, prev *parked) error {
	s := t.saga
	rows := u.Rows()
	if in.ended() {
		u.AfterCommit(func() { e.metrics.Ignored.WithLabelValues(s.name, "ended").Inc() })
		if err := e.record(ctx, rows, in, about(env, KindIgnored, fmt.Sprintf("instance is %s", in.Status))); err != nil {
			return err
		}
		return e.finish(ctx, rows, in, env)
	}
	arg := v
	if tf, ok := v.(TimerFired); ok {
		ts, ok := in.Timers[tf.Name]
		if !ok || !ts.Active || ts.Gen != tf.Gen {
			u.AfterCommit(func() { e.metrics.TimersStale.WithLabelValues(s.name).Inc() })
			if err := e.record(ctx, rows, in, about(env, KindTimerStale,
				fmt.Sprintf("timer %q generation %d is no longer current (cancelled or rescheduled)", tf.Name, tf.Gen))); err != nil {
				return err
			}
			return e.finish(ctx, rows, in, env)
		}
		if t.h.run == nil && e.newerState(s, in) {
			// A newer build scheduled it, and has its handler: this one
			// hands the firing back, as any step on newer state.
			return e.awaitNewerBuild(ctx, rows, s, in, env, env.Token.Max(in.Token), prev)
		}
		if t.h.run == nil {
			delete(in.Timers, tf.Name)
			if err := e.record(ctx, rows, in, about(env, KindNoTimeoutHandler,
				fmt.Sprintf("timer %q fired but the saga has no OnTimeout(%q) handler", tf.Name, tf.Name))); err != nil {
				return err
			}
			return e.finish(ctx, rows, in, env)
		}
		arg = Timeout{Name: tf.Name, Due: ts.Due}
	}
	need := env.Token.Max(in.Token)
	if e.newerState(s, in) {
		// Checked before the gate: this build will not run the step,
		// however far its models are.
		return e.awaitNewerBuild(ctx, rows, s, in, env, need, prev)
	}
	if len(t.h.reads) > 0 && !e.reached(g, need, t.h.reads) {
		return e.park(ctx, rows, in, env, parkReason{models: t.h.reads, token: need}, prev)
	}
	if prev != nil && !prev.Waiting.IsZero() && len(prev.Models) > 0 {
		waited := e.cfg.Clock.Now().Sub(prev.Waiting).Seconds()
		u.AfterCommit(func() { e.metrics.ParkSeconds.WithLabelValues(s.name).Observe(waited) })
	}

	state, err := s.state(in)
	if err != nil {
		return e.failStep(ctx, rows, in, env, err)
	}
	core := &stepCore{
		ctx: ctx, reg: e.reg, saga: s.name, id: in.ID, env: env, token: need,
		now: e.cfg.Clock.Now().UTC(), state: state, inst: in,
	}
	key := stepKey{saga: s.name, id: in.ID, event: env.ID}
	if fs, ok := e.failedSteps.get(key); ok {
		// Forgotten once this unit commits: rolled back, it brings the
		// message back, which must still not run the handler again.
		u.AfterCommit(func() { e.failedSteps.forget(key, fs) })
		ferr := fs.err
		// The handler ran on this message and failed, or had its step
		// refused, after writing through its unit, which was rolled back
		// for that: its outcome is that failure, retried (or failing the
		// instance, for a refusal) below as any other.
		err = ferr
		if errors.Is(err, ErrNoCommandHandler) {
			// Counted with the unit that fails the instance: the refused
			// unit's count went with its rollback.
			u.AfterCommit(func() { e.metrics.BadInput.WithLabelValues("no_command_handler").Inc() })
		}
	} else {
		before := unitWrites(u)
		err = runHandler(t.h, core, arg)
		wrote := func() bool { return unitWrites(u) != before && !errors.Is(ctx.Err(), context.Canceled) }
		if err == nil {
			err = e.commitStep(ctx, u, s, in, core, env, waitEntry(t.h.reads, g, prev))
			var perm *PermanentError
			if !errors.As(err, &perm) {
				return err
			}
			if wrote() {
				// A refused step keeps nothing: committed with the
				// instance's failure, the handler's own writes would
				// land, and land again when Engine.Retry runs it.
				return e.failedAfterWriting(ctx, key, err)
			}
			return e.failStep(ctx, rows, in, env, err)
		}
		if wrote() {
			return e.failedAfterWriting(ctx, key, err)
		}
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		// The delivery ended under the step (the lease was lost, or the
		// process is stopping): what it returned says nothing of the
		// step. Returning it rolls the unit back, and the step runs again,
		// with its attempts untouched, at the next delivery.
		return err
	}
	var perm *PermanentError
	if errors.As(err, &perm) {
		return e.failStep(ctx, rows, in, env, err)
	}
	attempts := 1
	if prev != nil {
		attempts = prev.Attempts + 1
	}
	if attempts >= s.cfg.maxAttempts {
		return e.failStep(ctx, rows, in, env, fmt.Errorf("step failed %d times (Config.MaxAttempts): %w", attempts, err))
	}
	delay := s.cfg.retryDelay(attempts)
	var re *RetryError
	if errors.As(err, &re) {
		delay = re.Delay
	}
	u.AfterCommit(func() { e.metrics.Steps.WithLabelValues(s.name, "retry").Inc() })
	return e.park(ctx, rows, in, env, parkReason{retryAt: core.now.Add(delay), err: err, attempts: attempts, token: need}, prev)
}

// waitEntry describes, for the step's history entry, what a gated step
// waited for: the models, and how long the gate waited (a step that ran
// after a park says so in its "resumed" entry instead).
func waitEntry(models []string, g gateOutcome, prev *parked) HistoryEntry {
	if len(models) == 0 {
		return HistoryEntry{}
	}
	h := HistoryEntry{Models: models}
	if g.gated && prev == nil {
		h.Waited = g.waited.String()
	}
	return h
}

// runHandler runs the user's handler, turning a panic into an error.
func runHandler(h *handlerDef, c *stepCore, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("saga %q: handler panicked on event %s (%s): %v", c.saga, c.env.ID, c.env.Type, r)
		}
	}()
	return h.run(c, v)
}

// finish marks the message handled and saves the instance. The causal
// token covers every message the instance has taken, even one it ignored:
// deliver relies on it to skip the handled lookup for newer messages.
func (e *Engine) finish(ctx context.Context, rows feed.Rows, in *instance, env events.Envelope) error {
	in.Token = in.Token.Max(env.Token)
	if err := e.markHandled(ctx, rows, in, env.ID, false); err != nil {
		return err
	}
	if err := e.syncParkIndex(ctx, rows, in); err != nil {
		return err
	}
	return e.save(ctx, rows, in)
}

// commitStep writes everything a successful step did.
func (e *Engine) commitStep(ctx context.Context, u feed.Unit, s *compiled, in *instance, c *stepCore, env events.Envelope, step HistoryEntry) error {
	rows := u.Rows()
	need := c.token
	// Everything that can refuse the step is checked before the instance
	// changes, so a refused step leaves it as it was.
	registered := append(e.canonical(in.Compensations), c.compensations[:c.compensateUpTo]...)
	sends := slices.Clone(c.commands)
	runCompensations := c.compensate && !in.Compensated
	if runCompensations {
		for i := len(registered) - 1; i >= 0; i-- {
			sends = append(sends, registered[i])
		}
	}
	if e.cfg.Commands != nil {
		for _, cmd := range sends {
			if !e.cfg.Commands.Handles(cmd.Type) {
				u.AfterCommit(func() { e.metrics.BadInput.WithLabelValues("no_command_handler").Inc() })
				return Permanent(fmt.Errorf("%w: the step sends %q, which no command handler handles (register one with command.Handle, or stop sending it)",
					ErrNoCommandHandler, cmd.Type))
			}
		}
		// Checked in the step that registers them, as their limits are:
		// refused only when a later step runs them, a compensation would
		// refuse that step (a decline, a timeout, the OnCancel of an
		// operator's cancel), and the instance could no longer be undone
		// or even cancelled.
		for _, comp := range c.compensations {
			if !e.cfg.Commands.Handles(comp.Type) {
				u.AfterCommit(func() { e.metrics.BadInput.WithLabelValues("no_command_handler").Inc() })
				return Permanent(fmt.Errorf("%w: the step registers the compensation %q, which no command handler handles (register one with command.Handle, or stop registering it)",
					ErrNoCommandHandler, comp.Type))
			}
		}
	}
	var state []byte
	err := recovered("the state's MarshalJSON", func() (err error) { state, err = rowjson.Marshal(c.state); return err })
	if err != nil {
		return Permanent(fmt.Errorf("saga %q: state does not encode as JSON: %w", s.name, err))
	}
	if err := e.checkStorable(s, in, c, env, need, state, sends); err != nil {
		return Permanent(err)
	}
	started := in.Seq == 0
	in.Seq++
	in.Token = in.Token.Max(need)
	if started {
		if err := e.record(ctx, rows, in, about(env, KindStarted, "")); err != nil {
			return err
		}
	}
	step.Kind, step.EventID, step.EventType, step.Token = KindStep, env.ID, env.Type, need
	if err := e.record(ctx, rows, in, step); err != nil {
		return err
	}
	if tf, ok := isTimerFired(env, c); ok {
		// A timer that fired is forgotten: its generation stays unique
		// (TimerGen only grows), so a late copy of it finds no entry and is
		// stale, and the row does not grow with every timer name ever used.
		delete(in.Timers, tf)
		if err := e.record(ctx, rows, in, about(env, KindTimerFired, fmt.Sprintf("timer %q", tf))); err != nil {
			return err
		}
	}
	in.Compensations = append(in.Compensations, c.compensations...)
	for _, comp := range c.compensations {
		if err := e.record(ctx, rows, in, HistoryEntry{Kind: KindCompensation, Detail: comp.Type}); err != nil {
			return err
		}
	}
	if runCompensations {
		in.Compensated = true
		if err := e.record(ctx, rows, in, HistoryEntry{Kind: KindCompensating, Detail: fmt.Sprintf("%d compensations, newest first", len(registered))}); err != nil {
			return err
		}
	}
	for i, cmd := range sends {
		if err := e.send(ctx, u, s, in, env, need, i, cmd); err != nil {
			return err
		}
	}
	scheduled, err := e.applyTimers(ctx, rows, in, c.timerOps)
	if err != nil {
		return err
	}
	for _, n := range c.notes {
		if err := e.record(ctx, rows, in, HistoryEntry{Kind: KindNote, Detail: n}); err != nil {
			return err
		}
	}
	outcome := "ok"
	switch {
	case c.complete:
		in.Status = StatusCompleted
		outcome = "completed"
	case c.fail != "":
		in.Status, in.Reason = StatusFailed, storable(c.fail)
		outcome = "failed"
	case in.Compensated:
		in.Status = StatusCompensating
	default:
		in.Status = StatusRunning
	}
	if in.ended() {
		if err := e.cancelAllTimers(ctx, rows, in); err != nil {
			return err
		}
		// Messages queued behind this step are for an instance that no
		// longer takes any: ignored now, or they would keep it blocked
		// (later messages queued, not ignored) with nobody to drain them.
		dropped, err := e.dropQueued(ctx, rows, in)
		if err != nil {
			return err
		}
		if dropped > 0 {
			name := s.name
			u.AfterCommit(func() { e.metrics.Ignored.WithLabelValues(name, "ended").Add(float64(dropped)) })
			if err := e.record(ctx, rows, in, HistoryEntry{Kind: KindIgnored, Detail: fmt.Sprintf("%d queued messages ignored: the instance is %s", dropped, in.Status)}); err != nil {
				return err
			}
		}
		kind := KindCompleted
		if in.Status == StatusFailed {
			kind = KindFailed
		}
		if err := e.record(ctx, rows, in, HistoryEntry{Kind: kind, Detail: in.Reason}); err != nil {
			return err
		}
	}
	in.State, in.StateVersion = state, s.cfg.stateVersion
	if err := e.finish(ctx, rows, in, env); err != nil {
		return err
	}
	if an, ok := u.(feed.Announcer); ok && scheduled {
		// A step that appends nothing and moves no checkpoint (one the
		// driver resumes) would otherwise commit silently: other
		// processes' timer loops, asleep until their earliest known
		// timer, would learn of this one only at their safety poll.
		an.Announce()
	}
	name := s.name
	u.AfterCommit(func() {
		e.metrics.Steps.WithLabelValues(name, outcome).Inc()
		if scheduled {
			e.timerWake.Notify()
		}
	})
	return nil
}

// canonical returns a copy of stored compensations with each command type
// under the name the registry stores it as now: a type renamed since they
// were registered (the new name registered, the old one an alias) is sent
// under its new name, whose streams its handler reads, and checked against
// the handlers under it. A name the registry does not know is kept.
func (e *Engine) canonical(stored []commandRecord) []commandRecord {
	out := slices.Clone(stored)
	for i := range out {
		if name, ok := e.reg.CanonicalName(out[i].Type); ok {
			out[i].Type = name
		}
	}
	return out
}

func isTimerFired(env events.Envelope, c *stepCore) (string, bool) {
	if env.Type != TimerFiredType {
		return "", false
	}
	tf, err := events.DecodeAs[TimerFired](c.reg, env)
	if err != nil {
		return "", false
	}
	return tf.Name, true
}

// compensationSize is what a registered compensation takes in the
// instance row: its payload (as the row keeps it, see storedJSON) and its
// record around it (with 20,000 small ones, the records are most of it).
func compensationSize(c commandRecord) int {
	return c.Payload.size() + len(c.Type) + len(`{"type":"","schema_version":0000000000,"payload_text":},`)
}

// instanceHeadroom is what an instance row holds besides its state and
// compensations (ids, status, timers, the parked step), kept free of the
// row value limit.
const instanceHeadroom = 64 << 10

// checkStorable refuses a step whose writes the store would refuse, before
// the step changes anything: a store error halfway through would fail the
// whole unit, which the runtime retries and then halts, holding up every
// instance of the partition for one instance's bad data. Refused here, the
// instance fails with the reason instead, and nothing of the step is kept.
func (e *Engine) checkStorable(s *compiled, in *instance, c *stepCore, env events.Envelope, need events.Token, state []byte, sends []commandRecord) error {
	gen := in.TimerGen
	for _, op := range c.timerOps {
		gen++ // as applyTimers numbers them, cancels included
		if op.cancel {
			// A cancel of a name no timer can have does nothing, as Cancel
			// promises.
			continue
		}
		// A schedule under such a name could never fire into a handler
		// (and a long one would not fit the timer's row key).
		if err := checkTimerName(op.name); err != nil {
			return fmt.Errorf("saga %q: Schedule(%q): %w", s.name, op.name, err)
		}
		// Refused only when it is due, the timer would never fire through
		// the feed: refused now, the step that asked for it is.
		stream, ev := timerFiredEvent(TimerFired{Saga: s.name, ID: in.ID, Name: op.name, Gen: gen, Due: op.due.UTC().Format(time.RFC3339Nano)})
		if _, err := events.Prepare(e.reg, e.limits, stream, events.AnyVersion, []events.Event{ev}); err != nil {
			return fmt.Errorf("saga %q: Schedule(%q): the event the timer fires would be refused by the store: %w", s.name, op.name, err)
		}
	}
	for i, cmd := range sends {
		stream, ev := commandEvent(s, in, in.Seq+1, env, need, i, cmd)
		if _, err := events.Prepare(e.reg, e.limits, stream, events.AnyVersion, []events.Event{ev}); err != nil {
			return fmt.Errorf("saga %q: the step sends %s, which the store refuses: %w", s.name, cmd.Type, err)
		}
	}
	if err := feed.ValidateRowValue(state); err != nil {
		return fmt.Errorf("saga %q: the step's state cannot be stored: %w", s.name, err)
	}
	size := storedJSON(state).size()
	for i, comp := range c.compensations {
		if err := feed.ValidateRowValue(json.RawMessage(comp.Payload)); err != nil {
			return fmt.Errorf("saga %q: compensation %s cannot be stored: %w", s.name, comp.Type, err)
		}
		// Checked as the command it will be sent as: refused only when a
		// later step runs the compensations, it would refuse that step (a
		// decline, a timeout, the OnCancel of an operator's cancel), and
		// the instance could no longer be undone or even cancelled. The
		// causation id and the token it will carry are of the same size.
		stream, ev := commandEvent(s, in, in.Seq+1, env, need, len(sends)+i, comp)
		if _, err := events.Prepare(e.reg, e.limits, stream, events.AnyVersion, []events.Event{ev}); err != nil {
			return fmt.Errorf("saga %q: the step registers the compensation %s, which the store would refuse when it is sent: %w", s.name, comp.Type, err)
		}
		size += compensationSize(comp)
	}
	for _, comp := range in.Compensations {
		size += compensationSize(comp)
	}
	size += timersSize(in, c.timerOps)
	if limit := events.DefaultMaxPayloadBytes - instanceHeadroom; size > limit {
		return fmt.Errorf("saga %q: the state, the registered compensations and the pending timers take %d bytes, more than the %d an instance holds (keep ids and status in state, not documents; reuse timer names)", s.name, size, limit)
	}
	return nil
}

// timerEntryBytes bounds what a pending timer takes in its instance's row
// besides its name: its generation, due time and flag as JSON.
const timerEntryBytes = 96

// timersSize is what the instance's pending timers will take in its row
// once ops are applied.
func timersSize(in *instance, ops []timerOp) int {
	if len(in.Timers) == 0 && len(ops) == 0 {
		return 0
	}
	pending := make(map[string]bool, len(in.Timers)+len(ops))
	for name, ts := range in.Timers {
		pending[name] = ts.Active
	}
	for _, op := range ops {
		pending[op.name] = !op.cancel
	}
	size := 0
	for name, active := range pending {
		if active {
			size += len(name) + timerEntryBytes
		}
	}
	return size
}

// commandEvent is the i-th command of the instance's step seq as the
// event appended to its command stream.
func commandEvent(s *compiled, in *instance, seq int64, env events.Envelope, need events.Token, i int, cmd commandRecord) (string, events.Event) {
	return command.StreamFor(cmd.Type, in.ID), events.Event{
		ID:   commandID(s.name, in.ID, in.Origin, seq, i),
		Data: events.Raw{Type: cmd.Type, SchemaVersion: cmd.SchemaVersion, Payload: json.RawMessage(cmd.Payload)},
		Metadata: events.Metadata{
			CorrelationID: in.ID,
			CausationID:   env.ID,
			Extra:         map[string]string{command.MetaCausalToken: need.String(), command.MetaSender: s.name},
		},
	}
}

// send appends one command through the step's unit.
func (e *Engine) send(ctx context.Context, u feed.Unit, s *compiled, in *instance, env events.Envelope, need events.Token, i int, cmd commandRecord) error {
	stream, ev := commandEvent(s, in, in.Seq, env, need, i, cmd)
	id := ev.ID
	res, err := u.Append(ctx, stream, events.AnyVersion, ev)
	if err != nil && !errors.Is(err, events.ErrDuplicateEvent) {
		return fmt.Errorf("saga %q: instance %s: send %s: %w", s.name, in.ID, cmd.Type, err)
	}
	if err == nil {
		in.Token = in.Token.Max(res.Token)
	}
	return e.record(ctx, u.Rows(), in, HistoryEntry{Kind: KindCommandSent, EventID: id, EventType: cmd.Type, Detail: string(cmd.Payload)})
}

// failStep fails the instance because a step could not run: the message is
// kept so Engine.Retry can run it again, and later messages queue.
func (e *Engine) failStep(ctx context.Context, rows feed.Rows, in *instance, env events.Envelope, cause error) error {
	name := in.Saga
	onCommit(ctx, func() { e.metrics.Steps.WithLabelValues(name, "failed").Inc() })
	e.log.ErrorContext(ctx, "saga: instance failed", "saga", in.Saga, "id", in.ID, "event_id", env.ID, "error", cause)
	if in.Parked != nil && in.Parked.Env.ID == env.ID {
		in.Parked = nil
	}
	in.Status, in.Reason = StatusFailed, storable(cause.Error())
	failed := stow(env)
	in.Failed = &failed
	if err := e.record(ctx, rows, in, about(env, KindFailed, cause.Error())); err != nil {
		return err
	}
	if err := e.markHandled(ctx, rows, in, env.ID, true); err != nil {
		return err
	}
	if err := e.syncParkIndex(ctx, rows, in); err != nil {
		return err
	}
	return e.save(ctx, rows, in)
}

// applyTimers applies a step's schedules and cancels and reports whether
// it scheduled any timer.
func (e *Engine) applyTimers(ctx context.Context, rows feed.Rows, in *instance, ops []timerOp) (bool, error) {
	scheduled := false
	for _, op := range ops {
		if in.Timers == nil {
			in.Timers = map[string]timerState{}
		}
		old, had := in.Timers[op.name]
		if had && old.Active {
			if err := rows.Delete(ctx, rowNamespace, tableTimers, timerKey(old.Due, in.Saga, in.ID, op.name)); err != nil {
				return scheduled, wrapRows(err, "delete timer", in.Saga, in.ID)
			}
		}
		in.TimerGen++
		if op.cancel {
			delete(in.Timers, op.name)
			if had && old.Active {
				if err := e.record(ctx, rows, in, HistoryEntry{Kind: KindTimerCancelled, Detail: op.name}); err != nil {
					return scheduled, err
				}
			}
			continue
		}
		due := op.due.UTC()
		in.Timers[op.name] = timerState{Gen: in.TimerGen, Due: due, Active: true}
		b, _ := json.Marshal(TimerFired{Saga: in.Saga, ID: in.ID, Name: op.name, Gen: in.TimerGen, Due: due.Format(time.RFC3339Nano)})
		if err := rows.Put(ctx, rowNamespace, tableTimers, timerKey(due, in.Saga, in.ID, op.name), b, in.Token); err != nil {
			return scheduled, wrapRows(err, "write timer", in.Saga, in.ID)
		}
		if err := e.record(ctx, rows, in, HistoryEntry{Kind: KindTimerScheduled, Detail: fmt.Sprintf("%s at %s (generation %d)", op.name, due.Format(time.RFC3339Nano), in.TimerGen)}); err != nil {
			return scheduled, err
		}
		scheduled = true
	}
	return scheduled, nil
}

// cancelAllTimers cancels the active timers of an instance that ends, in
// name order: the timeline records their cancels in the same order
// whichever instance, store or run it is.
func (e *Engine) cancelAllTimers(ctx context.Context, rows feed.Rows, in *instance) error {
	var ops []timerOp
	for _, name := range slices.Sorted(maps.Keys(in.Timers)) {
		if in.Timers[name].Active {
			ops = append(ops, timerOp{name: name, cancel: true})
		}
	}
	_, err := e.applyTimers(ctx, rows, in, ops)
	return err
}

package saga

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// parkLoop is the parked-step driver: it runs parked steps whose read
// models caught up (woken by the Tracker through watches) or whose retry
// time came, drains their mailboxes, and sweeps every SweepInterval for
// lost wake-ups and stuck steps, and for ended instances and ignored
// messages past EngineConfig.Retention.
func (e *Engine) parkLoop(ctx context.Context) {
	ticks := e.sweepTicks
	if ticks == nil {
		sweep := time.NewTicker(e.cfg.SweepInterval)
		defer sweep.Stop()
		ticks = sweep.C
	}
	purge := true // the first pass sweeps at once
	for {
		if ok, changed := e.assigned(); !ok {
			// Standing by: another process (of another build, say) runs
			// the sagas' work. Look again when that may have changed.
			e.clearStuck()
			select {
			case <-ctx.Done():
				return
			case <-changed:
			case <-ticks:
			}
			continue
		}
		wake := e.parkWake.C()
		_, next, err := e.runParked(ctx, true)
		if err != nil && ctx.Err() == nil {
			e.log.WarnContext(ctx, "saga: parked-step pass failed; retrying at the next sweep", "error", err)
		}
		// Wake-ups come with every park and retry time: the purge keeps to
		// the sweep's ticks, so it runs at every one of them and never
		// between (a purge on a wake-up would leave the next tick too
		// soon after it to purge again).
		more := false
		if purge && ctx.Err() == nil {
			_, more, err = e.purgeEnded(ctx, purgePassLimit, ignoredPassLimit)
			if err != nil && ctx.Err() == nil {
				e.log.WarnContext(ctx, "saga: retention sweep failed; retrying at the next sweep", "error", err)
			}
		}
		if e.passHook != nil {
			e.passHook(purge)
		}
		alive, ticked := e.sleep(ctx, next, wake, ticks)
		if !alive {
			return
		}
		purge = ticked || more // a backlog goes on at the next pass
	}
}

// RunParked runs, once, every parked step whose wait is over (its read
// models reached its token, or its retry time came) and the instances'
// queued messages, up to EngineConfig.DrainPerTurn steps of each instance
// (call it again while it returns more than 0 to drain longer queues). It
// returns how many instances moved on.
// The driver started by Start calls it by itself; tests on a virtual clock
// call it after moving read models or the clock. It runs nothing while
// EngineConfig.Assigned says this process is not assigned.
func (e *Engine) RunParked(ctx context.Context) (int, error) {
	if ok, _ := e.assigned(); !ok {
		e.clearStuck()
		return 0, nil
	}
	n, _, err := e.runParked(ctx, false)
	return n, err
}

// clearStuck sets the stuck gauge of every saga to 0: a process that
// stands by makes no pass, and would report the count of its last one for
// as long as it stands by, instances since retried or cancelled included.
// The processes that make passes report the count (aggregated with max).
func (e *Engine) clearStuck() {
	for name := range e.sagas {
		e.metrics.Stuck.WithLabelValues(name).Set(0)
	}
}

// assigned is EngineConfig.Assigned, true without one.
func (e *Engine) assigned() (bool, <-chan struct{}) {
	if e.cfg.Assigned == nil {
		return true, nil
	}
	return e.cfg.Assigned()
}

// NextRetry returns when the earliest parked step waiting out a retry
// delay (a handler's error or RetryAfter) may run again, and false when
// none waits. A time already passed means RunParked runs it now. Tests on
// a virtual clock move the clock there, as to NextTimer's time.
func (e *Engine) NextRetry(ctx context.Context) (time.Time, bool, error) {
	var next time.Time
	err := e.eachParked(ctx, func(ix parkIndex, _ *compiled) error {
		if !ix.RetryAt.IsZero() && (next.IsZero() || ix.RetryAt.Before(next)) {
			next = ix.RetryAt
		}
		return nil
	})
	return next, err == nil && !next.IsZero(), err
}

// eachParked calls fn for every parked index row of a saga type this
// engine runs, in key order, a page at a time; it stops at fn's error.
func (e *Engine) eachParked(ctx context.Context, fn func(ix parkIndex, s *compiled) error) error {
	after := ""
	for {
		page, err := e.cfg.Store.Rows().List(ctx, rowNamespace, tableParked, feed.RowQuery{After: after, Limit: 500})
		if err != nil {
			return fmt.Errorf("saga: list parked instances: %w", err)
		}
		for _, row := range page {
			after = row.Key
			var ix parkIndex
			if err := json.Unmarshal(row.Value, &ix); err != nil {
				e.log.ErrorContext(ctx, "saga: parked index row does not decode; skipping", "key", row.Key, "error", err)
				continue
			}
			s, ok := e.sagas[ix.Saga]
			if !ok {
				e.warnUnknown(ctx, ix.Saga)
				continue // another deployment may run it
			}
			if err := fn(ix, s); err != nil {
				return err
			}
		}
		if len(page) < 500 {
			return nil
		}
	}
}

func (e *Engine) runParked(ctx context.Context, watch bool) (int, time.Time, error) {
	var next time.Time
	// Operators' requests first: a retried step then runs in this pass. One
	// that fails is reported when the pass ends; the parked steps still
	// run.
	moved, reqErr := e.runRequests(ctx)
	if ctx.Err() != nil {
		return moved, next, reqErr
	}
	// stuck counts, by saga, the instances this pass found stuck: the
	// gauge is set from the store, so it is right after a restart and the
	// same in every process.
	stuck := map[string]int{}
	passErr := reqErr
	err := e.eachParked(ctx, func(ix parkIndex, s *compiled) error {
		now := e.cfg.Clock.Now()
		if !ix.RetryAt.IsZero() && now.Before(ix.RetryAt) {
			if next.IsZero() || ix.RetryAt.Before(next) {
				next = ix.RetryAt
			}
			return nil
		}
		late := now.Sub(ix.Since) > s.cfg.stuckAfter
		if len(ix.Models) > 0 && ix.Type == "" {
			// Written by a release that did not name the handler: once.
			if err := e.indexHandlerOnce(ctx, &ix); err != nil && ctx.Err() == nil {
				e.log.ErrorContext(ctx, "saga: a parked index row could not be brought up to date; the next pass tries again", "saga", ix.Saga, "id", ix.ID, "error", err)
				passErr = cmp.Or(passErr, err)
			}
		}
		if len(ix.Models) > 0 {
			ix.Models = e.currentReads(s, ix)
		}
		behind := len(ix.Models) > 0 && !e.reached(gateOutcome{}, ix.Token, ix.Models)
		if behind && late {
			caughtUp, err := e.caughtUpUnread(ctx, ix)
			switch {
			case err != nil:
				// A position could not be read: "stuck" would be a guess.
				// A later pass decides.
				late = false
			case caughtUp:
				behind = false
			}
		}
		if behind {
			if watch {
				e.watch(ctx, ix)
			}
			if late && ix.Stuck {
				// Recorded already: a unit per stuck step and sweep would
				// cost a backlog behind a model that is down thousands of
				// transactions every SweepInterval. One plain read of the
				// row instead, since the page was listed: another process
				// may have retried or cancelled the step meanwhile.
				if e.stillStuck(ctx, ix) {
					stuck[ix.Saga]++
				}
				return nil
			}
			if late {
				var isStuck bool
				err := e.withUnit(ctx, func(ctx context.Context, u feed.Unit) (err error) {
					isStuck, err = e.markStuck(ctx, u, ix, s.cfg.stuckAfter)
					return err
				})
				if isStuck {
					stuck[ix.Saga]++
				}
				if err != nil && ctx.Err() == nil {
					// As below: one instance (a row that no longer decodes,
					// say) must not hold up the others.
					e.log.ErrorContext(ctx, "saga: a stuck step could not be recorded; the next pass tries again", "saga", ix.Saga, "id", ix.ID, "error", err)
					passErr = cmp.Or(passErr, err)
					return nil
				}
				return err
			}
			return nil
		}
		ran, cut, err := e.resume(ctx, ix.Saga, ix.ID, e.cfg.DrainPerTurn)
		if cut {
			// The rest of its queue waits for the next pass, which must
			// come at once, not at the next sweep.
			e.parkWake.Notify()
		}
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			// One instance that cannot move on must not hold up the parked
			// steps after it: the pass goes on, and the first failure is
			// returned when it ends.
			e.log.ErrorContext(ctx, "saga: a parked step could not run; the next pass tries again", "saga", ix.Saga, "id", ix.ID, "error", err)
			passErr = cmp.Or(passErr, err)
			return nil
		}
		if ran {
			moved++
		}
		return nil
	})
	if err != nil {
		return moved, next, err
	}
	for name := range e.sagas {
		e.metrics.Stuck.WithLabelValues(name).Set(float64(stuck[name]))
	}
	return moved, next, passErr
}

// currentReads returns the models that the handler this engine runs for
// a parked step's event reads. A build that changed the handler's Reads
// while the step was parked runs it on those (resumeOne checks them), so
// the driver waits for and watches them too: the parked ones would leave
// a step waiting on a model no longer read (one retired, never to move),
// or run it unwatched once an added model moved. None when this build no
// longer handles the step (resumeOne ignores it, or records a timer firing
// as unhandled, at once); the parked models when the row does not say
// which handler it is.
func (e *Engine) currentReads(s *compiled, ix parkIndex) []string {
	switch {
	case ix.Type == "", ix.Type == TimerFiredType && ix.Timeout == "":
		// A row of an earlier release, or a firing not decoded: the
		// handler is unknown here.
		return ix.Models
	case ix.Timeout != "":
		if h := s.timeouts[ix.Timeout]; h != nil {
			return h.reads
		}
		return nil // no OnTimeout here: resumeOne records the firing at once
	}
	name, ok := e.reg.CanonicalName(ix.Type)
	if !ok {
		return nil // a type this build does not know: resumeOne ignores the step
	}
	return s.readsByName[name] // nil when the saga no longer handles it: ignored too
}

// stillStuck reports whether ix's parked-index row still says its step is
// stuck, read without a lock; true when the row cannot be read (the page
// listed it so).
func (e *Engine) stillStuck(ctx context.Context, ix parkIndex) bool {
	row, ok, err := e.cfg.Store.Rows().Get(ctx, rowNamespace, tableParked, instanceKey(ix.Saga, ix.ID), feed.LockNone)
	if err != nil {
		return true
	}
	var cur parkIndex
	return ok && json.Unmarshal(row.Value, &cur) == nil && cur.Stuck
}

// indexHandlerOnce rewrites a parked-index row written by an earlier
// release, which did not name the parked step's handler, from the
// instance, and sets ix's handler from it.
func (e *Engine) indexHandlerOnce(ctx context.Context, ix *parkIndex) error {
	return e.withUnit(ctx, func(ctx context.Context, u feed.Unit) error {
		in, found, err := e.load(ctx, u.Rows(), ix.Saga, ix.ID, feed.LockUpdate)
		if err != nil || !found || in.Parked == nil {
			return err
		}
		indexHandler(ix, in.Parked.Env)
		return e.syncParkIndex(ctx, u.Rows(), in)
	})
}

// watch makes sure the driver is woken when a parked step's models reach
// its token. One goroutine watches each set of models, waiting for the
// smallest token any step parked on that set waits for, then for the
// next: a goroutine (and a Tracker waiter slot) per parked instance would
// let a read model that stays behind, with thousands of steps parked on
// it, use up TrackerConfig.MaxWaiters, and every other wait in the process
// (an HTTP read of a healthy model) would be turned away stale at once.
func (e *Engine) watch(ctx context.Context, ix parkIndex) {
	set := slices.Clone(ix.Models)
	slices.Sort(set)
	set = slices.Compact(set)
	key := strings.Join(set, "\x00")
	e.watchMu.Lock()
	if w := e.watching[key]; w != nil {
		w.tokens[instanceKey(ix.Saga, ix.ID)] = ix.Token
		if w.interrupt != nil && ix.Token.Before(w.target) {
			// It waits for a later token: this one may be reached first.
			w.interrupt()
		}
		e.watchMu.Unlock()
		return
	}
	w := &modelWatch{models: set, tokens: map[string]events.Token{instanceKey(ix.Saga, ix.ID): ix.Token}}
	e.watching[key] = w
	e.watchMu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.watchModels(ctx, key, w)
	}()
}

// modelWatch is what the goroutine watching one set of models waits for:
// by instance key, the token its parked step waits for. target is the
// token of the wait under way, and interrupt ends that wait, so that the
// goroutine waits for an earlier token added meanwhile instead.
type modelWatch struct {
	models    []string
	tokens    map[string]events.Token
	target    events.Token
	interrupt context.CancelFunc
}

// watchModels waits until w's models reach each of its tokens in turn,
// smallest first, and wakes the driver each time one is reached. It
// returns when none is left, and when a wait is stopped or turned away:
// the driver's sweep watches what is still parked again later, so this
// never spins.
func (e *Engine) watchModels(ctx context.Context, key string, w *modelWatch) {
	done := func() {
		e.watchMu.Lock()
		delete(e.watching, key)
		e.watchMu.Unlock()
	}
	for {
		e.watchMu.Lock()
		if len(w.tokens) == 0 || ctx.Err() != nil {
			// Under the lock that watch takes, so a token added now
			// starts a new watcher instead of joining this one.
			delete(e.watching, key)
			e.watchMu.Unlock()
			return
		}
		var target events.Token
		first := true
		for _, tok := range w.tokens {
			if first || tok.Before(target) {
				target, first = tok, false
			}
		}
		wctx, interrupt := context.WithCancel(ctx)
		w.target, w.interrupt = target, interrupt
		e.watchMu.Unlock()
		st, err := e.cfg.Tracker.Wait(wctx, target, w.models...)
		interrupt()
		if err != nil {
			if ctx.Err() == nil && errors.Is(err, context.Canceled) {
				continue // interrupted for an earlier token
			}
			done()
			return
		}
		if !st.Stale {
			e.watchMu.Lock()
			for k, tok := range w.tokens {
				if !tok.After(target) {
					delete(w.tokens, k)
				}
			}
			e.watchMu.Unlock()
			e.parkWake.Notify()
			continue
		}
		if st.Reason != consistency.ReasonDeadline && st.Reason != consistency.ReasonAhead {
			done()
			return
		}
	}
}

// resume runs the instance's parked step, if its wait is over, and then
// its queued messages, each in a unit of its own, until the instance is
// unblocked or parks again, or until it has run limit steps: then cut
// says the instance may have more, for the next pass, so that one
// instance's long queue (or a burst arriving while it drains) does not
// hold up the other instances the pass has yet to reach. It reports
// whether anything ran.
func (e *Engine) resume(ctx context.Context, saga, id string, limit int) (ran, cut bool, err error) {
	for steps := 0; ; steps++ {
		if steps == limit {
			return ran, true, nil
		}
		more := false
		err := e.withUnit(ctx, func(ctx context.Context, u feed.Unit) error {
			var err error
			more, err = e.resumeOne(ctx, u, saga, id)
			return err
		})
		if err != nil {
			return ran, false, err
		}
		if !more {
			return ran, false, nil
		}
		ran = true
	}
}

// withUnit runs fn in a unit of its own and commits it, again after
// feed.ErrConflict.
func (e *Engine) withUnit(ctx context.Context, fn func(ctx context.Context, u feed.Unit) error) error {
	return inUnit(ctx, e.cfg.Store, e.cfg.ConflictRetries, fn)
}

// inUnit runs fn in a unit of src and commits it, again after
// feed.ErrConflict, up to attempts times in all.
func inUnit(ctx context.Context, src feed.Source, attempts int, fn func(ctx context.Context, u feed.Unit) error) error {
	for attempt := 1; ; attempt++ {
		u, err := src.Checkpoints().Begin(ctx)
		if err != nil {
			return fmt.Errorf("saga: begin unit: %w", err)
		}
		uctx := u.Context(events.ContextWithUnit(ctx, u))
		err = runInUnit(uctx, u, fn)
		if err == nil {
			err = u.Commit(ctx)
		}
		if err == nil {
			return nil
		}
		_ = u.Rollback(context.WithoutCancel(ctx))
		if !errors.Is(err, feed.ErrConflict) || attempt >= attempts {
			return err
		}
	}
}

// runInUnit runs fn, rolling u back before a panic goes on up: on
// PostgreSQL the unit's transaction would otherwise stay open, holding
// the instance rows it locked.
func runInUnit(ctx context.Context, u feed.Unit, fn func(ctx context.Context, u feed.Unit) error) error {
	defer func() {
		if r := recover(); r != nil {
			_ = u.Rollback(context.WithoutCancel(ctx))
			panic(r)
		}
	}()
	return fn(ctx, u)
}

// resumeOne takes one step of a blocked instance: the parked step when its
// wait is over, else the next queued message. It reports whether there may
// be more to do.
func (e *Engine) resumeOne(ctx context.Context, u feed.Unit, saga, id string) (bool, error) {
	rows := u.Rows()
	in, found, err := e.load(ctx, rows, saga, id, feed.LockUpdate)
	if err != nil {
		return false, err
	}
	s, ok := e.sagas[saga]
	if !found || !ok {
		return false, rows.Delete(ctx, rowNamespace, tableParked, instanceKey(saga, id))
	}
	// The driver found the index row: it exists, whatever the state says.
	in.indexed = true
	if p := in.Parked; p != nil {
		if !p.RetryAt.IsZero() && e.cfg.Clock.Now().Before(p.RetryAt) {
			return false, nil
		}
		if p.Env, err = e.unstow(ctx, p.Env); err != nil {
			return false, err
		}
		targets, v, err := e.route(p.Env)
		if err != nil {
			return false, e.failStep(ctx, rows, in, p.Env, err)
		}
		t, ok := pick(targets, s)
		if !ok && e.newerState(s, in) {
			// A newer build stored the state, and may have the handler
			// this build lacks (after a rollback): the step waits for it,
			// as any step on newer state does.
			return false, e.awaitNewerBuild(ctx, rows, s, in, p.Env, p.Env.Token.Max(in.Token), p)
		}
		if !ok {
			in.Parked, in.Status = nil, p.Resume
			if err := e.record(ctx, rows, in, about(p.Env, KindIgnored, "the saga no longer handles this message")); err != nil {
				return false, err
			}
			return true, e.finish(ctx, rows, in, p.Env)
		}
		if len(p.Models) > 0 && !e.reached(gateOutcome{}, p.Env.Token.Max(in.Token), t.h.reads) {
			return false, nil
		}
		in.Parked, in.Status = nil, p.Resume
		// A step parked on read models waited since it parked, however
		// often an operator's Retry restarted its stuck clock (Since), as
		// converge_saga_park_seconds counts it.
		since := p.Since
		if !p.Waiting.IsZero() && len(p.Models) > 0 {
			since = p.Waiting
		}
		if err := e.record(ctx, rows, in, HistoryEntry{
			Kind: KindResumed, EventID: p.Env.ID, EventType: p.Env.Type,
			Waited: e.cfg.Clock.Now().Sub(since).String(),
		}); err != nil {
			return false, err
		}
		return true, e.apply(ctx, u, t, in, p.Env, v, gateOutcome{}, p)
	}
	if in.MailboxHead >= in.MailboxTail || in.Status == StatusFailed {
		return false, e.syncParkIndex(ctx, rows, in)
	}
	key := childKey(saga, id, seqKey(in.MailboxHead))
	row, ok, err := rows.Get(ctx, rowNamespace, tableMailbox, key, feed.LockNone)
	if err != nil {
		return false, wrapRows(err, "read queued message", saga, id)
	}
	in.MailboxHead++
	if !ok {
		return true, e.save(ctx, rows, in)
	}
	if err := rows.Delete(ctx, rowNamespace, tableMailbox, key); err != nil {
		return false, wrapRows(err, "delete queued message", saga, id)
	}
	var env events.Envelope
	if err := json.Unmarshal(row.Value, &env); err != nil {
		return false, fmt.Errorf("saga: queued message of %s/%s does not decode: %w", saga, id, err)
	}
	if env, err = e.unstow(ctx, env); err != nil {
		return false, err
	}
	targets, v, err := e.route(env)
	if err != nil {
		return false, e.failStep(ctx, rows, in, env, err)
	}
	t, ok := pick(targets, s)
	if !ok && e.newerState(s, in) {
		// As for the parked step: the message heads the instance's
		// queue again, parked for the newer build.
		return false, e.awaitNewerBuild(ctx, rows, s, in, env, env.Token.Max(in.Token), nil)
	}
	if !ok {
		if err := e.record(ctx, rows, in, about(env, KindIgnored, "the saga no longer handles this message")); err != nil {
			return false, err
		}
		return true, e.finish(ctx, rows, in, env)
	}
	return true, e.apply(ctx, u, t, in, env, v, gateOutcome{}, nil)
}

// newerState reports whether a newer build than this one (a higher
// Config.StateVersion) stored the instance's state.
func (e *Engine) newerState(s *compiled, in *instance) bool {
	return in.State != nil && in.StateVersion > s.cfg.stateVersion
}

func pick(targets []target, s *compiled) (target, bool) {
	for _, t := range targets {
		if t.saga == s {
			return t, true
		}
	}
	return target{}, false
}

// markStuck reports a parked step that has waited past stuckAfter, and
// whether the instance's parked step is stuck. It still runs only once its
// models catch up. The pass listed ix before this unit locked the
// instance: what it found is checked again under the lock, so an operator's
// Retry (which restarts the stuck clock), or a step parked anew since, is
// not reported stuck at once.
func (e *Engine) markStuck(ctx context.Context, u feed.Unit, ix parkIndex, stuckAfter time.Duration) (bool, error) {
	rows := u.Rows()
	in, found, err := e.load(ctx, rows, ix.Saga, ix.ID, feed.LockUpdate)
	if err != nil || !found || in.Parked == nil {
		return false, err
	}
	if in.Parked.Stuck {
		if ix.Stuck {
			return true, nil
		}
		// Recorded stuck by a release whose index rows did not say so:
		// once, so that later sweeps count it from the row.
		return true, e.syncParkIndex(ctx, rows, in)
	}
	if len(in.Parked.Models) == 0 || e.cfg.Clock.Now().Sub(in.Parked.Since) <= stuckAfter {
		return false, nil
	}
	in.Parked.Stuck = true
	if err := e.record(ctx, rows, in, HistoryEntry{
		Kind: KindStuck, EventID: in.Parked.Env.ID, EventType: in.Parked.Env.Type, Models: in.Parked.Models, Token: in.Parked.Token,
		Detail: fmt.Sprintf("parked since %s; read models still behind", in.Parked.Since.Format(time.RFC3339Nano)),
	}); err != nil {
		return false, err
	}
	e.log.WarnContext(ctx, "saga: parked step is stuck (its read models are not catching up)", "saga", in.Saga, "id", in.ID,
		"models", in.Parked.Models, "since", in.Parked.Since)
	if err := e.syncParkIndex(ctx, rows, in); err != nil {
		return false, err
	}
	return true, e.save(ctx, rows, in)
}

// warnUnknown reports, once per type, parked instances of a saga type this
// engine does not run: another deployment may run it, or the type was
// removed while instances were in flight (run its definition again to
// retry or cancel them, see the package doc).
func (e *Engine) warnUnknown(ctx context.Context, saga string) {
	e.watchMu.Lock()
	seen := e.unknown[saga]
	if e.unknown == nil {
		e.unknown = map[string]bool{}
	}
	e.unknown[saga] = true
	e.watchMu.Unlock()
	if !seen {
		e.log.WarnContext(ctx, "saga: parked instances of a saga type this engine does not run (removed type? run its definition again, then retry or cancel its instances there)", "saga", saga)
	}
}

// caughtUpUnread reads the positions of a parked step's models that the
// Tracker has not learned yet, and reports whether they then reach its
// token. After a restart it has read none (the watches read them, later),
// and a step whose models caught up while the process was down would be
// reported stuck, warned about and counted, for nothing. It fails when a
// position cannot be read. Positions the Tracker knows are not read again.
func (e *Engine) caughtUpUnread(ctx context.Context, ix parkIndex) (bool, error) {
	if err := e.cfg.Tracker.Learn(ctx, ix.Models...); err != nil {
		return false, err
	}
	return e.reached(gateOutcome{}, ix.Token, ix.Models), nil
}

package saga

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// timerStream is the stream timer-fired events of a saga type are appended
// to. Their correlation id is the instance id, so they reach the
// instance's partition.
func timerStream(saga string) string { return "converge.saga.timer-" + saga }

// timerLoop fires due timers. It sleeps until the earliest timer is due, or
// until a step of this process schedules one (in-process wake-up), or new
// events arrive (a step in another process that schedules a timer also
// appends or commits, which wakes the feed), or TimerSafetyInterval
// passes.
func (e *Engine) timerLoop(ctx context.Context) {
	safety := time.NewTicker(e.cfg.TimerSafetyInterval)
	defer safety.Stop()
	for {
		wake := e.timerWake.C()
		feedWake := e.cfg.Store.Wake()
		_, next, err := e.fireDue(ctx)
		if err != nil && ctx.Err() == nil {
			e.log.WarnContext(ctx, "saga: firing timers failed; retrying", "error", err)
			if retry := e.cfg.Clock.Now().Add(time.Second); next.IsZero() || retry.Before(next) {
				next = retry
			}
		}
		if e.timerSleepHook != nil {
			e.timerSleepHook(feedWake)
		}
		if alive, _ := e.sleepFeed(ctx, next, wake, feedWake, safety.C); !alive {
			return
		}
	}
}

// FireDue fires every timer due by the engine clock's now: it appends each
// one's timer-fired event (idempotently: its id derives from the instance,
// the timer and its generation) and deletes its row. It returns how many it
// fired. A timer that fails to fire does not hold up the others: the pass
// goes on, and returns the first error when it ends (the row stays, for
// the next pass). A timer whose event the store refuses for good (over
// limits lowered since it was scheduled) runs from its instance's rows
// instead (see KindTimerRefused). The timer loop started by Start calls it
// by itself; tests on a virtual clock call it after moving the clock.
func (e *Engine) FireDue(ctx context.Context) (int, error) {
	n, _, err := e.fireDue(ctx)
	return n, err
}

// timerPage is how many timer rows one look reads: rows sort by due time,
// so a look that finds none due reads little.
const timerPage = 50

// NextTimer returns when the earliest pending timer is due, and false when
// none is pending.
func (e *Engine) NextTimer(ctx context.Context) (time.Time, bool, error) {
	page, err := e.cfg.Store.Rows().List(ctx, rowNamespace, tableTimers, feed.RowQuery{Limit: 1})
	if err != nil || len(page) == 0 {
		return time.Time{}, false, err
	}
	due, err := timerDue(page[0].Key)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("saga: timer row %q: %w", page[0].Key, err)
	}
	return due, true, nil
}

func (e *Engine) fireDue(ctx context.Context) (int, time.Time, error) {
	rows := e.cfg.Store.Rows()
	fired, due := 0, 0
	// One timer that cannot fire must not hold up the others: the pass goes
	// on past it, and the first failure is returned when it ends.
	var failed error
	after := ""
	for {
		page, err := rows.List(ctx, rowNamespace, tableTimers, feed.RowQuery{After: after, Limit: timerPage})
		if err != nil {
			e.metrics.TimersDue.Set(float64(due))
			return fired, time.Time{}, cmp.Or(failed, fmt.Errorf("saga: list timers: %w", err))
		}
		now := e.cfg.Clock.Now()
		for _, row := range page {
			after = row.Key
			at, err := timerDue(row.Key)
			if err != nil {
				e.log.ErrorContext(ctx, "saga: timer row with a bad key; deleting it", "key", row.Key, "error", err)
				_ = rows.Delete(ctx, rowNamespace, tableTimers, row.Key)
				continue
			}
			if at.After(now) {
				e.metrics.TimersDue.Set(float64(due))
				return fired, at, failed
			}
			due++
			if err := e.fire(ctx, rows, row); err != nil {
				if ctx.Err() != nil {
					return fired, time.Time{}, err
				}
				e.log.WarnContext(ctx, "saga: a due timer could not fire; the next pass tries again", "key", row.Key, "error", err)
				failed = cmp.Or(failed, err)
				continue
			}
			fired++
		}
		if len(page) < timerPage {
			e.metrics.TimersDue.Set(float64(due))
			return fired, time.Time{}, failed
		}
	}
}

// timerFiredEvent is the event a timer's firing appends.
func timerFiredEvent(tf TimerFired) (string, events.Event) {
	id := uuid.NewSHA1(commandNamespace, fmt.Appendf(nil, "timer\x00%s\x00%s\x00%s\x00%d", tf.Saga, tf.ID, tf.Name, tf.Gen)).String()
	return timerStream(tf.Saga), events.Event{
		ID: id, Data: tf,
		Metadata: events.Metadata{CorrelationID: tf.ID, CausationID: "timer:" + tf.Name},
	}
}

func (e *Engine) fire(ctx context.Context, rows feed.Rows, row feed.Row) error {
	var tf TimerFired
	if err := json.Unmarshal(row.Value, &tf); err != nil {
		e.log.ErrorContext(ctx, "saga: timer row does not decode; deleting it", "key", row.Key, "error", err)
		return rows.Delete(ctx, rowNamespace, tableTimers, row.Key)
	}
	stream, ev := timerFiredEvent(tf)
	res, err := e.cfg.Store.Append(ctx, stream, events.AnyVersion, ev)
	if errors.Is(err, events.ErrInvalidEvent) {
		// Refused for good (over the store's limits, for a timer scheduled
		// before Schedule checked them, or since lowered): retried, it
		// would fail at every pass for ever.
		return e.fireThroughRows(ctx, row, tf, ev.ID, err)
	}
	if err != nil && !errors.Is(err, events.ErrDuplicateEvent) {
		return fmt.Errorf("saga: fire timer %q of %s/%s: %w", tf.Name, tf.Saga, tf.ID, err)
	}
	// Another process firing the same timer first makes this append a
	// retry of its own (AlreadyStored, no error): count the firing once.
	if err == nil && !res.AlreadyStored {
		e.metrics.TimersFired.WithLabelValues(tf.Saga).Inc()
	}
	// The key names the due time, not the generation: a step that
	// rescheduled the timer to the same instant since the row was listed
	// wrote the new generation under the same key. Delete the row only if
	// it is still the one fired, or the new timer would never fire.
	return e.withUnit(ctx, func(ctx context.Context, u feed.Unit) error {
		_, err := deleteFiredTimer(ctx, u.Rows(), row.Key, tf.Gen)
		return err
	})
}

// deleteFiredTimer deletes the timer row key if it still holds generation
// gen, and reports whether it did.
func deleteFiredTimer(ctx context.Context, rows feed.Rows, key string, gen int64) (bool, error) {
	cur, found, err := rows.Get(ctx, rowNamespace, tableTimers, key, feed.LockUpdate)
	if err != nil || !found {
		return false, err
	}
	var now TimerFired
	if json.Unmarshal(cur.Value, &now) == nil && now.Gen != gen {
		return false, nil
	}
	return true, rows.Delete(ctx, rowNamespace, tableTimers, key)
}

// fireThroughRows hands a timer whose timer-fired event the store refuses
// to its instance through the rows instead, in one unit with the timer
// row's delete: parked to run at once when nothing blocks the instance,
// else queued behind what does, as the event would have been. The driver
// of an engine running the saga type runs it like any parked or queued
// message (its payload is kept in the row: a timer-fired event is small),
// so the timeout is not lost and the timer blocks no other. It is
// recorded in the instance's history, logged and counted
// (converge_saga_bad_input_total{kind="timer_event_refused"}).
func (e *Engine) fireThroughRows(ctx context.Context, row feed.Row, tf TimerFired, eventID string, refused error) error {
	b, err := json.Marshal(tf)
	if err != nil {
		return fmt.Errorf("saga: encode timer %q of %s/%s: %w", tf.Name, tf.Saga, tf.ID, err)
	}
	handed := false
	err = e.withUnit(ctx, func(ctx context.Context, u feed.Unit) error {
		handed = false
		rows := u.Rows()
		if deleted, err := deleteFiredTimer(ctx, rows, row.Key, tf.Gen); err != nil || !deleted {
			return err // rescheduled since it was listed: not this timer's turn
		}
		in, found, err := e.load(ctx, rows, tf.Saga, tf.ID, feed.LockUpdate)
		if err != nil || !found || in.ended() {
			return err // the event would have been ignored
		}
		if ts, ok := in.Timers[tf.Name]; !ok || !ts.Active || ts.Gen != tf.Gen {
			return nil // stale: the event would have been ignored
		}
		env := events.Envelope{
			ID: eventID, StreamID: timerStream(tf.Saga), Type: TimerFiredType, SchemaVersion: 1, Payload: b, Token: in.Token,
			Metadata: events.Metadata{CorrelationID: tf.ID, CausationID: "timer:" + tf.Name},
		}
		if err := e.record(ctx, rows, in, about(env, KindTimerRefused, fmt.Sprintf(
			"timer %q generation %d: the store refused its timer-fired event (%v); the timer runs from the instance's rows instead", tf.Name, tf.Gen, refused))); err != nil {
			return err
		}
		handed = true
		u.AfterCommit(func() { e.parkWake.Notify() })
		if in.blocked() {
			return e.enqueue(ctx, rows, in, env)
		}
		now := e.cfg.Clock.Now().UTC()
		in.Parked, in.Status = &parked{Env: stow(env), Since: now, RetryAt: now, Resume: in.Status}, StatusParked
		if err := e.markHandled(ctx, rows, in, env.ID, true); err != nil {
			return err
		}
		if err := e.syncParkIndex(ctx, rows, in); err != nil {
			return err
		}
		return e.save(ctx, rows, in)
	})
	if err != nil {
		return fmt.Errorf("saga: fire timer %q of %s/%s through its rows (the store refused its event: %w): %w", tf.Name, tf.Saga, tf.ID, refused, err)
	}
	if handed {
		e.metrics.BadInput.WithLabelValues("timer_event_refused").Inc()
		e.metrics.TimersFired.WithLabelValues(tf.Saga).Inc()
		e.log.ErrorContext(ctx, "saga: the store refused a timer's timer-fired event; the timer runs from its instance's rows instead",
			"saga", tf.Saga, "id", tf.ID, "timer", tf.Name, "generation", tf.Gen, "error", refused)
	}
	return nil
}

func timerDue(key string) (time.Time, error) {
	head, _, ok := strings.Cut(key, "/")
	if !ok {
		return time.Time{}, errors.New("no '/' in timer key")
	}
	n, err := strconv.ParseInt(head, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, n), nil
}

// feedWakeGap bounds how often feed activity makes the timer loop look
// for timers scheduled by other processes.
const feedWakeGap = 50 * time.Millisecond

// sleep waits until next (zero: no deadline), a wake-up or a tick. It
// reports false when ctx ended, and whether the tick ended the wait.
func (e *Engine) sleep(ctx context.Context, next time.Time, wake <-chan struct{}, tick <-chan time.Time) (alive, ticked bool) {
	return e.sleepFeed(ctx, next, wake, nil, tick)
}

func (e *Engine) sleepFeed(ctx context.Context, next time.Time, wake, feedWake <-chan struct{}, tick <-chan time.Time) (alive, ticked bool) {
	var due <-chan time.Time
	if !next.IsZero() {
		t := time.NewTimer(max(next.Sub(e.cfg.Clock.Now()), 0))
		defer t.Stop()
		due = t.C
	}
	select {
	case <-ctx.Done():
		return false, false
	case <-wake:
	case <-feedWake:
		// Every append wakes the feed: coalesce them, so a busy feed costs
		// at most one look at the timer rows per feedWakeGap.
		t := time.NewTimer(feedWakeGap)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false, false
		case <-t.C:
		}
	case <-tick:
		return true, true
	case <-due:
	}
	return true, false
}

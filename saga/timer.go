package saga

import (
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
			next = e.cfg.Clock.Now().Add(time.Second)
		}
		if alive, _ := e.sleepFeed(ctx, next, wake, feedWake, safety.C); !alive {
			return
		}
	}
}

// FireDue fires every timer due by the engine clock's now: it appends each
// one's timer-fired event (idempotently: its id derives from the instance,
// the timer and its generation) and deletes its row. It returns how many it
// fired. The timer loop started by Start calls it by itself; tests on a
// virtual clock call it after moving the clock.
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
	fired := 0
	for {
		page, err := rows.List(ctx, rowNamespace, tableTimers, feed.RowQuery{Limit: timerPage})
		if err != nil {
			return fired, time.Time{}, fmt.Errorf("saga: list timers: %w", err)
		}
		now := e.cfg.Clock.Now()
		for _, row := range page {
			at, err := timerDue(row.Key)
			if err != nil {
				e.log.ErrorContext(ctx, "saga: timer row with a bad key; deleting it", "key", row.Key, "error", err)
				_ = rows.Delete(ctx, rowNamespace, tableTimers, row.Key)
				continue
			}
			if at.After(now) {
				e.metrics.TimersDue.Set(float64(fired))
				return fired, at, nil
			}
			if err := e.fire(ctx, rows, row); err != nil {
				e.metrics.TimersDue.Set(float64(fired + 1))
				return fired, time.Time{}, err
			}
			fired++
		}
		if len(page) < timerPage {
			e.metrics.TimersDue.Set(float64(fired))
			return fired, time.Time{}, nil
		}
	}
}

func (e *Engine) fire(ctx context.Context, rows feed.Rows, row feed.Row) error {
	var tf TimerFired
	if err := json.Unmarshal(row.Value, &tf); err != nil {
		e.log.ErrorContext(ctx, "saga: timer row does not decode; deleting it", "key", row.Key, "error", err)
		return rows.Delete(ctx, rowNamespace, tableTimers, row.Key)
	}
	id := uuid.NewSHA1(commandNamespace, fmt.Appendf(nil, "timer\x00%s\x00%s\x00%s\x00%d", tf.Saga, tf.ID, tf.Name, tf.Gen)).String()
	res, err := e.cfg.Store.Append(ctx, timerStream(tf.Saga), events.AnyVersion, events.Event{
		ID: id, Data: tf,
		Metadata: events.Metadata{CorrelationID: tf.ID, CausationID: "timer:" + tf.Name},
	})
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
		cur, found, err := u.Rows().Get(ctx, rowNamespace, tableTimers, row.Key, feed.LockUpdate)
		if err != nil || !found {
			return err
		}
		var now TimerFired
		if json.Unmarshal(cur.Value, &now) == nil && now.Gen != tf.Gen {
			return nil
		}
		return u.Rows().Delete(ctx, rowNamespace, tableTimers, row.Key)
	})
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

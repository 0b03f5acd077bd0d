package saga

import (
	"context"
	"time"

	"github.com/converge-es/converge/events/feed"
)

// SetSweepTicks makes the driver of e sweep at each value sent on c instead
// of on its SweepInterval ticker. Set it before Start.
func SetSweepTicks(e *Engine, c <-chan time.Time) { e.sweepTicks = c }

// SetPassHook makes the driver of e call fn after each of its passes, with
// whether the pass ran the retention sweep. Set it before Start.
func SetPassHook(e *Engine, fn func(purged bool)) { e.passHook = fn }

// SetTimerSleepHook makes the timer loop of e call fn just before each of
// its sleeps, with the feed wake-up channel it sleeps on. Set it before
// Start.
func SetTimerSleepHook(e *Engine, fn func(feedWake <-chan struct{})) { e.timerSleepHook = fn }

// WakeDriver wakes the driver of e as a park does.
func WakeDriver(e *Engine) { e.parkWake.Notify() }

// ConfigOf returns the configuration e runs with, defaults applied.
func ConfigOf(e *Engine) EngineConfig { return e.cfg }

// FireRow fires the timer of one row listed from the timers table, as the
// timer loop does for each due row.
func FireRow(ctx context.Context, e *Engine, row feed.Row) error {
	return e.fire(ctx, e.cfg.Store.Rows(), row)
}

// TimerRows lists the timer rows, in due order.
func TimerRows(ctx context.Context, e *Engine) ([]feed.Row, error) {
	return e.cfg.Store.Rows().List(ctx, rowNamespace, tableTimers, feed.RowQuery{})
}

package saga

import "time"

// SetSweepTicks makes the driver of e sweep at each value sent on c instead
// of on its SweepInterval ticker. Set it before Start.
func SetSweepTicks(e *Engine, c <-chan time.Time) { e.sweepTicks = c }

// SetPassHook makes the driver of e call fn after each of its passes, with
// whether the pass ran the retention sweep. Set it before Start.
func SetPassHook(e *Engine, fn func(purged bool)) { e.passHook = fn }

// WakeDriver wakes the driver of e as a park does.
func WakeDriver(e *Engine) { e.parkWake.Notify() }

// ConfigOf returns the configuration e runs with, defaults applied.
func ConfigOf(e *Engine) EngineConfig { return e.cfg }

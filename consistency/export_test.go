package consistency

import "time"

// SetJoinHook makes t call fn, under its lock, each time a caller shares a
// read of name already in flight (fn must not block).
func SetJoinHook(t *Tracker, fn func(name string)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.joinHook = fn
}

// SetFallbackTicks makes t's fallback loop, once started, tick when ticks
// delivers instead of every FallbackInterval, and call passed (when not
// nil) after each tick's reads. Call it before Start.
func SetFallbackTicks(t *Tracker, ticks <-chan time.Time, passed func()) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.fallbackTicks = ticks
	t.passHook = passed
}

package consistency

// SetJoinHook makes t call fn, under its lock, each time a caller shares a
// read of name already in flight (fn must not block).
func SetJoinHook(t *Tracker, fn func(name string)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.joinHook = fn
}

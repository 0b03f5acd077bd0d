package signal

import "sync"

// Watchers is a set of callbacks fired with a value, for stores that tell
// every interested party in the process about a change. The zero value is
// ready to use.
type Watchers[T any] struct {
	mu   sync.Mutex
	next int
	fns  map[int]func(T)
}

// Add registers fn until the returned func is called (safe twice).
func (w *Watchers[T]) Add(fn func(T)) (cancel func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fns == nil {
		w.fns = map[int]func(T){}
	}
	id := w.next
	w.next++
	w.fns[id] = fn
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.fns, id)
	}
}

// Fire calls every registered fn with v, outside the lock, so an fn may
// add or cancel watchers.
func (w *Watchers[T]) Fire(v T) {
	w.mu.Lock()
	fns := make([]func(T), 0, len(w.fns))
	for _, fn := range w.fns {
		fns = append(fns, fn)
	}
	w.mu.Unlock()
	for _, fn := range fns {
		fn(v)
	}
}

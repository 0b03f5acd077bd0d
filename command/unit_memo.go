package command

import "sync"

// unitMemoSize is how many entries a generation of a unitMemo holds: far
// more than a process has units open, and a retry middleware asks again
// within one delivery, long before that many other calls have failed.
const unitMemoSize = 1024

// unitMemo remembers a value per key of a unit of work (failed calls, the
// units whose head claimed their commands). A unit is never used again
// once it ends, so entries only age out: two generations of at most
// unitMemoSize entries each, the older dropped when the newer fills. The
// zero value is ready.
type unitMemo[K comparable, V any] struct {
	mu        sync.Mutex
	cur, prev map[K]V
}

func (m *unitMemo[K, V]) get(k K) (V, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.cur[k]; ok {
		return v, true
	}
	v, ok := m.prev[k]
	return v, ok
}

func (m *unitMemo[K, V]) put(k K, v V) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cur == nil || len(m.cur) >= unitMemoSize {
		m.prev, m.cur = m.cur, map[K]V{}
	}
	m.cur[k] = v
}

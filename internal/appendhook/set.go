package appendhook

import (
	"sync"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// Set is a store's installed hooks. The zero value is empty and ready.
type Set struct {
	mu     sync.RWMutex
	hooks  []entry
	nextID uint64
}

type entry struct {
	id uint64
	h  feed.AppendHook
}

// Add installs h until the returned func is called (idempotent).
func (s *Set) Add(h feed.AppendHook) (remove func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	id := s.nextID
	s.hooks = append(s.hooks, entry{id: id, h: h})
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			for i, e := range s.hooks {
				if e.id == id {
					s.hooks = append(s.hooks[:i:i], s.hooks[i+1:]...)
					return
				}
			}
		})
	}
}

// Wanting returns the hooks, in installation order, that want an append of
// evs. An event whose type is unknown is left to the append to refuse.
func (s *Set) Wanting(reg *events.Registry, evs []events.Event) []feed.AppendHook {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.hooks) == 0 {
		return nil
	}
	types := TypeNames(reg, evs)
	var out []feed.AppendHook
	for _, e := range s.hooks {
		if e.h.Wants(types) {
			out = append(out, e.h)
		}
	}
	return out
}

// Wanted reports whether any hook wants an append of evs.
func (s *Set) Wanted(reg *events.Registry, evs []events.Event) bool {
	return len(s.Wanting(reg, evs)) > 0
}

// TypeNames returns the stored type names of evs, skipping unknown ones.
func TypeNames(reg *events.Registry, evs []events.Event) []string {
	out := make([]string, 0, len(evs))
	for _, ev := range evs {
		switch d := ev.Data.(type) {
		case events.Raw:
			out = append(out, d.Type)
		default:
			if name, _, err := reg.NameOf(d); err == nil {
				out = append(out, name)
			}
		}
	}
	return out
}

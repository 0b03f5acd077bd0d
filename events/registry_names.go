package events

import "slices"

// StoredNames returns every stored type name that decodes into the same Go
// type as name: its registered name and every alias of it, sorted. Consumers
// that filter the feed by type must list all of them, or events stored
// under an old name (before a rename, see Alias) are never delivered. It
// returns nil when name is not registered.
func (r *Registry) StoredNames(name string) []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.byName[name]
	if !ok {
		return nil
	}
	var out []string
	for n, x := range r.byName {
		if x == e {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// Canonical returns the name a stored type name is registered under: name
// itself, or for an alias the name it aliases. Dispatch on it, never on the
// stored name, so events stored before a rename reach the same handler. It
// returns false when name is not registered.
func (r *Registry) Canonical(name string) (string, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	e, ok := r.byName[name]
	if !ok {
		return "", false
	}
	return e.name, true
}

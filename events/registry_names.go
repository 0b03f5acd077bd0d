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

package memstore

import "github.com/converge-es/converge/events/feed"

var _ feed.HookedSource = (*Store)(nil)

// AddAppendHook installs h on every later append, through the store or its
// units, until remove is called. An append outside a unit that h wants runs
// in a unit of its own.
func (s *Store) AddAppendHook(h feed.AppendHook) (remove func()) { return s.hooks.Add(h) }

package memstore

import (
	"context"
	"errors"
	"sync"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// unit is the in-memory feed.Unit. Memory has no transactions, so the unit
// covers only the checkpoint: handler writes made elsewhere are not rolled
// back with it.
type unit struct {
	store *checkpointStore

	mu   sync.Mutex
	done bool
}

// errUnitDone is returned by a second Commit, or a Commit after Rollback.
var errUnitDone = errors.New("memstore: unit already committed or rolled back (Begin a new one)")

// Context returns ctx unchanged: there is no transaction to carry.
func (u *unit) Context(ctx context.Context) context.Context { return ctx }

// Commit stores pos as l's checkpoint if l's generation is still current,
// then notifies checkpoint watchers. The unit is finished either way.
func (u *unit) Commit(ctx context.Context, l feed.Lease, pos events.Token) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.done {
		return errUnitDone
	}
	u.done = true
	return u.store.commit(ctx, l, pos)
}

// Rollback finishes the unit without storing anything. After Commit it is a
// no-op.
func (u *unit) Rollback(context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.done = true
	return nil
}

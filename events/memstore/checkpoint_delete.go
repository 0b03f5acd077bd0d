package memstore

import (
	"context"

	"github.com/converge-es/converge/events/feed"
)

var _ feed.CheckpointDeleter = (*checkpointStore)(nil)

// DeleteCheckpoints deletes the checkpoints of names whose lease is free.
func (c *checkpointStore) DeleteCheckpoints(ctx context.Context, names ...string) (int, error) {
	if err := c.checkInput(ctx, feed.ValidateConsumerNames(names...)); err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	n := 0
	for _, name := range names {
		cp := c.names[name]
		// A lease is live up to and including leaseUntil, as Acquire
		// judges it: a name still held is not deleted.
		if cp == nil || (cp.owner != "" && !now.After(cp.leaseUntil)) {
			continue
		}
		delete(c.names, name)
		n++
	}
	return n, nil
}

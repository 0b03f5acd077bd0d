package pgstore

import (
	"context"
	"fmt"

	"github.com/converge-es/converge/events/feed"
)

var _ feed.CheckpointDeleter = checkpoints{}

// DeleteCheckpoints deletes the checkpoints of names whose lease is free.
func (c checkpoints) DeleteCheckpoints(ctx context.Context, names ...string) (int, error) {
	if c.s.isClosed() {
		return 0, errClosed
	}
	if err := feed.ValidateConsumerNames(names...); err != nil {
		return 0, err
	}
	if len(names) == 0 {
		return 0, nil
	}
	tag, err := c.s.pool.Exec(ctx, fmt.Sprintf(
		`DELETE FROM %s WHERE name = ANY($1) AND (owner IS NULL OR lease_until IS NULL OR lease_until < now())`,
		table(c.s.cfg.Schema, "checkpoints")), names)
	if err != nil {
		return 0, fmt.Errorf("pgstore: delete checkpoints: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

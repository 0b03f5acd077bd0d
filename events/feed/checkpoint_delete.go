package feed

import "context"

// CheckpointDeleter is implemented by checkpoint stores that can forget
// consumers nobody runs any more (both of converge's stores do). A
// checkpoint left behind by a finished rebuild or a retired consumer would
// otherwise lag forever and keep the lag monitor's health check failing.
type CheckpointDeleter interface {
	// DeleteCheckpoints deletes the checkpoints of names whose lease is
	// free (released or expired) and reports how many it deleted. A name
	// whose lease is held is left alone: its holder would only create it
	// again at its next commit. Unknown names are not an error.
	DeleteCheckpoints(ctx context.Context, names ...string) (int, error)
}

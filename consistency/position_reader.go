package consistency

import (
	"context"

	"github.com/converge-es/converge/events"
)

// PositionReader reads a projection's durable checkpoint. Every
// feed.CheckpointStore satisfies it.
type PositionReader interface {
	// Position returns the stored checkpoint of name, zero when unknown.
	Position(ctx context.Context, name string) (events.Token, error)
}

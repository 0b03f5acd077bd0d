package consistency

import (
	"context"

	"github.com/converge-es/converge/events"
)

// Counter counts events in the global order. A Tracker uses it to tell a
// stale reader how far behind it is (Status.Behind).
type Counter interface {
	// CountBetween returns how many events lie strictly after `after` and
	// at or before upTo.
	CountBetween(ctx context.Context, after, upTo events.Token) (int64, error)
}

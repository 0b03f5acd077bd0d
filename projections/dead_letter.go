package projections

import (
	"encoding/json"
	"time"

	"github.com/converge-es/converge/events"
)

// DeadLetter is an event a projection gave up on under the DeadLetter
// policy. The projection's checkpoint moved past it in the same unit of
// work that stored the dead letter, so it is never applied unless someone
// acts on it (append a corrective event, or fix the handler and Rebuild).
type DeadLetter struct {
	ID         int64
	Projection string
	Generation int
	EventID    string
	StreamID   string
	Version    int64
	Token      events.Token
	Type       string
	Payload    json.RawMessage
	// Reason is the last attempt's error.
	Reason    string
	Attempts  int
	CreatedAt time.Time
}

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
//
// Dead letters are the runtime's records (feed.DeadLetterRecord), stored as
// rows of feed.RuntimeNamespace under the projection's checkpoint names.
type DeadLetter struct {
	// ID numbers the dead letters of one listing from 1, in checkpoint
	// and event id order.
	ID         int64
	Projection string
	// Generation is the generation the live processor wrote when the
	// dead letter was reported (OnDeadLetter), or the active one when
	// listed (Runner.DeadLetters).
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

package projections

import (
	"encoding/json"
	"time"

	"github.com/converge-es/converge/events"
)

// DeadLetter is an event a projection gave up on under the DeadLetter
// policy. The projection's checkpoint moved past it in the same unit of
// work that stored the dead letter, so it is never applied unless someone
// acts on it: fix the handler and replay it (Runner.RequestReplay), append
// a corrective event, or fix the handler and Rebuild.
//
// Dead letters are the runtime's records (feed.DeadLetterRecord), stored as
// rows of feed.RuntimeNamespace keyed "<Checkpoint>/<EventID>", the key
// feed.RequestReplay and `converge dead-letters replay` take.
type DeadLetter struct {
	// ID numbers the dead letters of one listing from 1, in checkpoint
	// and event id order.
	ID         int64
	Projection string
	// Checkpoint is the checkpoint name of the partition that gave up on
	// the event (feed.PartitionName): the projection's name when it is not
	// split, else "<projection>#<index>/<count>", of the partition count
	// it ran with then.
	Checkpoint string
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

package events

import (
	"encoding/json"
	"time"
)

// Envelope is a stored event as readers see it: where it sits in its stream
// and in the global order, what type it is, and its payload as stored.
type Envelope struct {
	// ID is the event's unique id (a UUID). Appending the same event again
	// returns where it was stored; reusing its id for anything else fails
	// with ErrDuplicateEvent. Together this makes retried appends safe.
	ID string
	// StreamID names the stream the event belongs to.
	StreamID string
	// Version is the event's position in its stream, starting at 1.
	Version int64
	// Type is the stable type name the event was registered under.
	Type string
	// SchemaVersion is the payload shape's version when it was stored;
	// Registry.Decode upcasts older shapes to the current Go type.
	SchemaVersion int
	// Payload is the event body as stored (JSON).
	Payload json.RawMessage
	// Metadata carries correlation, causation and free-form fields.
	Metadata Metadata
	// RecordedAt is when the store accepted the event.
	RecordedAt time.Time
	// Token is the event's position in the global order.
	Token Token
}

// Metadata travels with an event. CorrelationID ties together everything one
// business process caused; CausationID names the message that directly caused
// this event.
type Metadata struct {
	CorrelationID string            `json:"correlation_id,omitempty"`
	CausationID   string            `json:"causation_id,omitempty"`
	Extra         map[string]string `json:"extra,omitempty"`
}

// Event is one event to append: a registered Go value (or a Raw event) plus
// its metadata.
type Event struct {
	// ID is the event's unique id. Leave it empty to have a UUID generated
	// once per Append call (the store's own retries reuse it); set it, with
	// AssignIDs or deterministically, to make an append you retry yourself
	// recognisably the same.
	ID string
	// Data is a value of a type registered in the store's Registry, or a Raw.
	Data any
	// Metadata is stored with the event.
	Metadata Metadata
}

// Raw is an event whose type name and JSON payload are given as they are, for
// code that forwards events it does not know (bridges, the Watermill
// publisher). The payload must still be valid JSON.
type Raw struct {
	Type string
	// SchemaVersion is the version of Payload's shape. 0 is stored as 1:
	// a payload already in a later shape sent without its version would
	// be upcast again when read, so forward it with the version it has.
	SchemaVersion int
	Payload       json.RawMessage
}

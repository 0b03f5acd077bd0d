package live

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Types of the messages a Hub sends, in Message.Type.
const (
	// TypeUpdated carries an entity's read-model row (Data) and the
	// position it reflects (Position). Snapshot is true when it was read
	// by Config.Snapshot rather than published.
	TypeUpdated = "updated"
	// TypeSubscribed acknowledges a subscription. Every update for the
	// entity published after the subscription took effect follows it.
	TypeSubscribed = "subscribed"
	// TypeUnsubscribed acknowledges an unsubscribe. No update for the
	// entity follows it.
	TypeUnsubscribed = "unsubscribed"
	// TypeError reports a request the Hub refused, or a snapshot it could
	// not read. The connection stays open.
	TypeError = "error"
)

// Actions a client may send, in Request.Action.
const (
	ActionSubscribe   = "subscribe"
	ActionUnsubscribe = "unsubscribe"
)

// Message is what a Hub sends to clients, one per WebSocket text message.
// Go clients can decode into it.
//
//	{"type":"subscribed","entity":"order-1"}
//	{"type":"updated","entity":"order-1","data":{"status":"paid"},"position":"v2.----------3----------k"}
//	{"type":"error","entity":"order-1","error":"…"}
type Message struct {
	Type   string `json:"type"`
	Entity string `json:"entity,omitempty"`
	// Data is the read-model row as the projection published it; JSON null
	// when it published none (a deleted row).
	Data json.RawMessage `json:"data,omitempty"`
	// Position is the events.Token string of the event that produced Data.
	// A client holding a token from its own write knows its write is
	// visible once Position compares at or after it (events.ParseToken).
	Position string `json:"position,omitempty"`
	Snapshot bool   `json:"snapshot,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Request is what a client sends: {"action":"subscribe","entity":"order-1"}.
type Request struct {
	Action string `json:"action"`
	Entity string `json:"entity"`
}

// validateEntityID reports why id cannot be subscribed to, in words meant
// for the client.
func validateEntityID(id string) error {
	switch {
	case id == "":
		return errors.New(`entity is empty: send {"action":"subscribe","entity":"<id>"}`)
	case len(id) > MaxEntityIDLen:
		return fmt.Errorf("entity is %d bytes, the limit is %d", len(id), MaxEntityIDLen)
	case !utf8.ValidString(id):
		return errors.New("entity is not valid UTF-8")
	}
	return nil
}

// encode marshals m. It fails when m.Data is not valid JSON, or not valid
// UTF-8: a message goes out as a WebSocket text message, which must be
// UTF-8 (a browser fails the connection on one that is not), and
// json.Marshal copies a json.RawMessage's bytes without checking that.
// Empty data is not JSON either, and json.Marshal would not say so: the
// field's omitempty drops it, and the client would get an update without
// data.
func (m *Message) encode() ([]byte, error) {
	if len(m.Data) == 0 {
		return nil, errors.New("data is empty, which is not JSON (send null for a row that is gone)")
	}
	if !utf8.Valid(m.Data) {
		return nil, errors.New("data is not valid UTF-8")
	}
	return json.Marshal(m)
}

// mustEncode marshals a message without Data, which cannot fail.
func (m *Message) mustEncode() []byte {
	b, err := json.Marshal(m)
	if err != nil {
		panic(fmt.Sprintf("live: encoding %s message: %v", m.Type, err))
	}
	return b
}

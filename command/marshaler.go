package command

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/stackgrow"
)

// Marshaler is the cqrs.CommandEventMarshaler of commands stored as
// events: names are the types' stored names in the registry (so a Go type
// can be renamed), payloads decode through the registry's upcasters.
type Marshaler struct {
	Registry *events.Registry
}

var _ cqrs.CommandEventMarshaler = Marshaler{}

// Marshal encodes v as a message that feed.Publisher appends as an event
// of v's stored type.
func (m Marshaler) Marshal(v any) (*message.Message, error) {
	raw, err := m.Registry.Encode(deref(v))
	if err != nil {
		return nil, fmt.Errorf("command: marshal %T: %w", v, err)
	}
	msg := message.NewMessage(uuid.NewString(), message.Payload(raw.Payload))
	msg.Metadata.Set(feed.MetaType, raw.Type)
	msg.Metadata.Set(feed.MetaSchemaVersion, strconv.Itoa(raw.SchemaVersion))
	return msg, nil
}

// Unmarshal decodes a delivered command into v, a pointer to its Go type.
// A payload that does not decode into it is an *events.DecodeError; the
// Processor rejects such a command instead of failing its delivery.
func (m Marshaler) Unmarshal(msg *message.Message, v any) error {
	env, err := feed.EnvelopeFromMessage(msg)
	if err != nil {
		return fmt.Errorf("command: unmarshal: %w", err)
	}
	got, err := m.Registry.Decode(env)
	if err != nil {
		return fmt.Errorf("command: unmarshal %s: %w", env.ID, err)
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Type() != reflect.TypeOf(got) {
		return fmt.Errorf("command: unmarshal %s: %q decodes to %T, not %T", env.ID, env.Type, got, v)
	}
	rv.Elem().Set(reflect.ValueOf(got))
	return nil
}

// Name returns v's stored type name ("" when v's type is not registered).
func (m Marshaler) Name(v any) string {
	name, _, err := m.Registry.NameOf(deref(v))
	if err != nil {
		return ""
	}
	return name
}

// NameFromMessage returns the stored type name of a delivered command.
func (m Marshaler) NameFromMessage(msg *message.Message) string {
	return msg.Metadata.Get(feed.MetaType)
}

func deref(v any) any {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() {
		return rv.Elem().Interface()
	}
	return v
}

// undecodableKey marks, in a delivered message's context, why its command
// does not decode.
type undecodableKey struct{}

// deliveryMarshaler is the Processor's Marshaler. Watermill's command
// processor unmarshals a command before its handler runs, and fails the
// delivery when that fails; a payload that does not decode (another
// service's schema, a schema newer than this build's) would then fail for
// ever, holding up every later command of the handler. So a command that
// does not decode is left zero and its message marked, for the
// Processor's OnHandle to reject it instead of handling it.
type deliveryMarshaler struct{ Marshaler }

func (m deliveryMarshaler) Unmarshal(msg *message.Message, v any) error {
	stackgrow.Reserve()
	err := m.Marshaler.Unmarshal(msg, v)
	if de := (*events.DecodeError)(nil); errors.As(err, &de) {
		msg.SetContext(context.WithValue(msg.Context(), undecodableKey{}, de))
		return nil
	}
	return err
}

// undecodable returns why the command of a delivered message does not
// decode, or nil when it does.
func undecodable(msg *message.Message) error {
	err, _ := msg.Context().Value(undecodableKey{}).(error)
	return err
}

package feed

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/converge-es/converge/events"
)

// Metadata keys of the messages a Subscriber delivers. The Publisher reads
// MetaStreamID, MetaType, MetaSchemaVersion, MetaCorrelationID and
// MetaCausationID from the messages it appends.
const (
	// MetaStreamID is the event's stream id. On publish it names the stream
	// to append to, overriding the topic.
	MetaStreamID = "converge_stream_id"
	// MetaVersion is the event's version in its stream (decimal).
	MetaVersion = "converge_version"
	// MetaType is the event's stored type name. On publish it sets the type.
	MetaType = "converge_type"
	// MetaSchemaVersion is the payload's schema version (decimal). On publish
	// it sets the schema version.
	MetaSchemaVersion = "converge_schema_version"
	// MetaToken is the event's position in the global order
	// (events.Token.String); TokenFromMessage parses it.
	MetaToken = "converge_token"
	// MetaEventID is the stored event id. It differs from the message UUID
	// for events appended by a Publisher (see MetaWatermillUUID).
	MetaEventID = "converge_event_id"
	// MetaRecordedAt is when the store accepted the event (RFC 3339, UTC,
	// nanoseconds).
	MetaRecordedAt = "converge_recorded_at"
	// MetaCorrelationID carries events.Metadata.CorrelationID. It is
	// Watermill's own key, so middleware.CorrelationID propagates it.
	MetaCorrelationID = middleware.CorrelationIDMetadataKey
	// MetaCausationID carries events.Metadata.CausationID.
	MetaCausationID = "causation_id"
	// MetaWatermillUUID is the stored Extra key holding the UUID of the
	// Watermill message a Publisher appended. The Subscriber delivers the
	// event with that UUID, so a message keeps its UUID through the store.
	MetaWatermillUUID = "watermill_uuid"
	// MetaEncoding is the stored Extra key naming how a Publisher wrapped an
	// opaque payload (EncodingBase64). The Subscriber unwraps such payloads
	// before delivery and leaves the key in the metadata, so
	// EnvelopeFromMessage can rebuild the stored envelope.
	MetaEncoding = "converge_encoding"
	// MetaPayloadAsStored is set ("true") on a delivered message whose
	// payload is marked EncodingBase64 but does not decode, and so is
	// delivered as stored: EnvelopeFromMessage then does not wrap it again
	// (it would return a payload that was never stored). An Extra of that
	// name is delivered under MetaExtraPrefix, as the envelope's keys are.
	MetaPayloadAsStored = "converge_payload_as_stored"
	// MetaExtraPrefix goes before a stored Extra key that is one of the
	// envelope's keys above (MetaStreamID to MetaCausationID), or such a
	// key with the prefix already, in a delivered message's metadata: an
	// Extra "correlation_id" is delivered as "converge_extra_correlation_id",
	// so it can neither pass for the event's correlation id nor hide it.
	// EnvelopeFromMessage and the Publisher take the prefix off again.
	// Every other Extra key is delivered as it is.
	MetaExtraPrefix = "converge_extra_"
)

// ErrNotFeedMessage is wrapped by TokenFromMessage and EnvelopeFromMessage
// when a message lacks the metadata a Subscriber sets.
var ErrNotFeedMessage = errors.New("feed: message lacks feed metadata (only messages delivered by a feed.Subscriber carry it)")

// envelopeKeys are the metadata keys that describe the envelope itself.
// Everything else in a delivered message's metadata is events.Metadata.Extra.
var envelopeKeys = map[string]bool{
	MetaStreamID:      true,
	MetaVersion:       true,
	MetaType:          true,
	MetaSchemaVersion: true,
	MetaToken:         true,
	MetaEventID:       true,
	MetaRecordedAt:    true,
	MetaCorrelationID: true,
	MetaCausationID:   true,

	MetaPayloadAsStored: true,
}

// newMessage turns a stored event into the message a Subscriber delivers.
// Extra keys that would be taken for envelope keys are delivered under
// MetaExtraPrefix (messageKey), so no stored extra can shadow an envelope
// key, and EnvelopeFromMessage gives back the metadata exactly as stored.
// A payload marked EncodingBase64 that does not decode is delivered as
// stored, with the error returned beside the message for the caller to log.
func newMessage(env events.Envelope) (*message.Message, error) {
	uuid := env.ID
	if u := env.Metadata.Extra[MetaWatermillUUID]; u != "" {
		uuid = u
	}
	payload := []byte(env.Payload)
	var decodeErr error
	if Encoding(env.Metadata.Extra[MetaEncoding]) == EncodingBase64 {
		raw, err := decodeBase64Payload(env.Payload)
		if err == nil {
			payload = raw
		} else {
			decodeErr = fmt.Errorf("feed: event %s is marked %s=%s but its payload does not decode (delivered as stored): %w",
				env.ID, MetaEncoding, EncodingBase64, err)
		}
	}
	msg := message.NewMessage(uuid, bytes.Clone(payload))
	// Sized for what follows: NewMessage's empty map grew twice on the way.
	msg.Metadata = make(message.Metadata, len(env.Metadata.Extra)+len(envelopeKeys))
	for k, v := range env.Metadata.Extra {
		msg.Metadata.Set(messageKey(k), v)
	}
	msg.Metadata.Set(MetaStreamID, env.StreamID)
	msg.Metadata.Set(MetaVersion, strconv.FormatInt(env.Version, 10))
	msg.Metadata.Set(MetaType, env.Type)
	msg.Metadata.Set(MetaSchemaVersion, strconv.Itoa(env.SchemaVersion))
	msg.Metadata.Set(MetaToken, env.Token.String())
	msg.Metadata.Set(MetaEventID, env.ID)
	msg.Metadata.Set(MetaRecordedAt, env.RecordedAt.UTC().Format(time.RFC3339Nano))
	if env.Metadata.CorrelationID != "" {
		msg.Metadata.Set(MetaCorrelationID, env.Metadata.CorrelationID)
	}
	if env.Metadata.CausationID != "" {
		msg.Metadata.Set(MetaCausationID, env.Metadata.CausationID)
	}
	if decodeErr != nil {
		msg.Metadata.Set(MetaPayloadAsStored, "true")
	}
	return msg, decodeErr
}

// MessageFromEnvelope is the message a Subscriber delivers for a stored
// event: for code that hands stored events to Watermill handlers by other
// means (the saga simulation delivers commands over gochannel with it).
// EnvelopeFromMessage turns it back.
func MessageFromEnvelope(env events.Envelope) (*message.Message, error) {
	return newMessage(env)
}

// TokenFromMessage returns the global position of the event a Subscriber
// delivered as msg: hand it to consistency waits, or compare it with a
// read model's checkpoint.
func TokenFromMessage(msg *message.Message) (events.Token, error) {
	s := msg.Metadata.Get(MetaToken)
	if s == "" {
		return events.Token{}, fmt.Errorf("%w: message %s has no %s", ErrNotFeedMessage, msg.UUID, MetaToken)
	}
	tok, err := events.ParseToken(s)
	if err != nil {
		return events.Token{}, fmt.Errorf("feed: message %s: %s: %w", msg.UUID, MetaToken, err)
	}
	return tok, nil
}

// EnvelopeFromMessage rebuilds the stored event a Subscriber delivered as
// msg, so a handler can use typed data (events.Registry.Decode) instead of
// metadata strings. The payload is returned as stored: a payload the
// Subscriber unwrapped from EncodingBase64 is wrapped again, one it could
// not unwrap (MetaPayloadAsStored) is not.
func EnvelopeFromMessage(msg *message.Message) (events.Envelope, error) {
	md := msg.Metadata
	need := func(key string) (string, error) {
		v := md.Get(key)
		if v == "" {
			return "", fmt.Errorf("%w: message %s has no %s", ErrNotFeedMessage, msg.UUID, key)
		}
		return v, nil
	}
	var env events.Envelope
	var err error
	if env.ID, err = need(MetaEventID); err != nil {
		return events.Envelope{}, err
	}
	if env.StreamID, err = need(MetaStreamID); err != nil {
		return events.Envelope{}, err
	}
	if env.Type, err = need(MetaType); err != nil {
		return events.Envelope{}, err
	}
	if env.Token, err = TokenFromMessage(msg); err != nil {
		return events.Envelope{}, err
	}
	bad := func(key string, err error) error {
		return fmt.Errorf("feed: message %s: metadata %s=%q: %w", msg.UUID, key, md.Get(key), err)
	}
	if env.Version, err = strconv.ParseInt(md.Get(MetaVersion), 10, 64); err != nil {
		return events.Envelope{}, bad(MetaVersion, err)
	}
	if env.SchemaVersion, err = strconv.Atoi(md.Get(MetaSchemaVersion)); err != nil {
		return events.Envelope{}, bad(MetaSchemaVersion, err)
	}
	if env.RecordedAt, err = time.Parse(time.RFC3339Nano, md.Get(MetaRecordedAt)); err != nil {
		return events.Envelope{}, bad(MetaRecordedAt, err)
	}
	env.Metadata.CorrelationID = md.Get(MetaCorrelationID)
	env.Metadata.CausationID = md.Get(MetaCausationID)
	for k, v := range md {
		if envelopeKeys[k] {
			continue
		}
		if env.Metadata.Extra == nil {
			env.Metadata.Extra = map[string]string{}
		}
		env.Metadata.Extra[extraKey(k)] = v
	}
	env.Payload = append(json.RawMessage(nil), msg.Payload...)
	if Encoding(md.Get(MetaEncoding)) == EncodingBase64 && md.Get(MetaPayloadAsStored) == "" {
		env.Payload = encodeBase64Payload(msg.Payload)
	}
	return env, nil
}

// messageKey is the metadata key a delivered message carries Extra key k
// under: k itself, unless k is an envelope key or one with MetaExtraPrefix
// before it (any number of times), which gets one more prefix. So the
// message keys of Extra are never envelope keys, and no two Extra keys
// share one.
func messageKey(k string) string {
	if escaped(k) {
		return MetaExtraPrefix + k
	}
	return k
}

// extraKey undoes messageKey. A key messageKey never yields (one with the
// prefix before a key that is no envelope key) is taken as it is, so
// metadata added to a message by other means reaches Extra unchanged, as
// it did before the prefix existed.
func extraKey(k string) string {
	if rest, ok := strings.CutPrefix(k, MetaExtraPrefix); ok && escaped(rest) {
		return rest
	}
	return k
}

// escaped reports the Extra keys messageKey prefixes.
func escaped(k string) bool {
	for {
		if envelopeKeys[k] {
			return true
		}
		rest, ok := strings.CutPrefix(k, MetaExtraPrefix)
		if !ok {
			return false
		}
		k = rest
	}
}

// encodeBase64Payload wraps opaque bytes as a JSON string.
func encodeBase64Payload(b []byte) json.RawMessage {
	out, err := json.Marshal(base64.StdEncoding.EncodeToString(b))
	if err != nil {
		// A base64 string always marshals.
		panic("feed: encode base64 payload: " + err.Error())
	}
	return out
}

// decodeBase64Payload unwraps what encodeBase64Payload wrapped.
func decodeBase64Payload(p json.RawMessage) ([]byte, error) {
	var s string
	if err := json.Unmarshal(p, &s); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(s)
}

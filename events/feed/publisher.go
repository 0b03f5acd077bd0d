package feed

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/converge-es/converge/events"
)

// publishNamespace seeds the name-based (version 5) UUIDs of published
// events. Changing it would break the deduplication of retried publishes.
var publishNamespace = uuid.MustParse("6f1d3c52-0b8e-4a53-9a63-2f1de8f0c4a7")

// Publisher is a Watermill message.Publisher that appends every message as
// one event to an events.Store, so Watermill handlers and cqrs buses can
// write to the event store and be read back by a Subscriber.
//
// Each message is appended with events.AnyVersion to the stream named by
// its MetaStreamID metadata, or else to the stream named by the topic (a
// Subscriber of a topic reads the category of that name, which includes the
// stream). The event type comes from MetaType (else
// PublisherConfig.DefaultType), the schema version from MetaSchemaVersion,
// correlation_id and causation_id become events.Metadata fields, and every
// other key is stored in Extra, without the MetaExtraPrefix a Subscriber
// delivers some Extra keys under, so a forwarded message keeps its event's
// Extra as stored. Keys describing where a delivered event was stored
// (MetaVersion, MetaToken, MetaEventID, MetaRecordedAt) are dropped.
// To forward a delivered message to another topic, delete its MetaStreamID
// first: it names the stream it came from.
//
// Event ids are derived from the stream and the message UUID (a version 5
// UUID), and the message UUID is kept in Extra[MetaWatermillUUID], which a
// Subscriber delivers as the message UUID. Deriving the id keeps publishing
// idempotent per stream: publishing a message again to the same stream (a
// retry after a lost reply) appends nothing and succeeds, while the same
// message published to two topics becomes two events, as Watermill expects.
// A message with an empty UUID gets a fresh event id each time.
//
// Messages are appended one by one, in order; Publish stops at the first
// failure, and messages before it stay appended.
//
// A message whose context carries a unit of work of the same store
// (events.UnitFromContext: a handler run by converge's runtime publishing
// with its message's context) is appended through the unit, so it commits
// with the handler's other writes, or not at all: the feed is then the
// handler's outbox.
type Publisher struct {
	store  events.Store
	cfg    PublisherConfig
	closed atomic.Bool
}

var _ message.Publisher = (*Publisher)(nil)

// NewPublisher returns a Publisher appending to store.
func NewPublisher(store events.Store, cfg *PublisherConfig) (*Publisher, error) {
	if store == nil {
		return nil, errors.New("feed: NewPublisher needs an events.Store (a memstore.Store or a pgstore.Store)")
	}
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &Publisher{store: store, cfg: c}, nil
}

// Publish appends each message to its stream, using the message's context.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	if p.closed.Load() {
		return fmt.Errorf("feed: publish to %q: %w: the Publisher was closed", topic, events.ErrClosed)
	}
	for _, msg := range msgs {
		stream, ev, err := p.event(topic, msg)
		if err != nil {
			return fmt.Errorf("feed: publish message %s to %q: %w", msg.UUID, topic, err)
		}
		_, err = p.storeFor(msg).Append(msg.Context(), stream, events.AnyVersion, ev)
		if errors.Is(err, events.ErrDuplicateEvent) && ev.ID != "" {
			// The same message republished is idempotent already; this is
			// its UUID stored before in another form (other metadata, say).
			// The first publication stands, as Watermill expects of a
			// redelivered message.
			continue
		}
		if err != nil {
			return fmt.Errorf("feed: publish message %s to stream %q: %w", msg.UUID, stream, err)
		}
	}
	return nil
}

// storeFor returns the unit msg's context carries when it belongs to the
// Publisher's store (they share a registry), else the store.
func (p *Publisher) storeFor(msg *message.Message) events.Store {
	if u, ok := events.UnitFromContext(msg.Context()); ok && u.Registry() == p.store.Registry() {
		return u
	}
	return p.store
}

// Close makes later Publish calls fail. It does not close the store.
func (p *Publisher) Close() error {
	p.closed.Store(true)
	return nil
}

// publishDropped are metadata keys the Publisher consumes or drops instead
// of storing them in Extra.
var publishDropped = map[string]bool{
	MetaStreamID:      true,
	MetaType:          true,
	MetaSchemaVersion: true,
	MetaVersion:       true,
	MetaToken:         true,
	MetaEventID:       true,
	MetaRecordedAt:    true,
	MetaCorrelationID: true,
	MetaCausationID:   true,
	MetaWatermillUUID: true,
	MetaEncoding:      true,
	// An event published from a delivered message is a new event that no
	// append hook applied: carried over, the mark would make the strong
	// projections it names skip it for good.
	AppliedMarksKey: true,
}

// AppliedMarksKey is the events.Metadata.Extra key under which append
// hooks record what they applied in the append's unit
// (projections.AppliedMetadataKey). It is reserved: stores refuse appends
// that set it (events.CheckReserved), and the Publisher drops it.
const AppliedMarksKey = events.AppliedMarksKey

// event builds the event for msg and names its stream.
func (p *Publisher) event(topic string, msg *message.Message) (string, events.Event, error) {
	md := msg.Metadata
	stream := md.Get(MetaStreamID)
	if stream == "" {
		stream = topic
	}
	if stream == TopicAll {
		return "", events.Event{}, fmt.Errorf("%w: %q names the whole feed, not a stream (publish to a stream id, or set %s)",
			events.ErrInvalidEvent, TopicAll, MetaStreamID)
	}
	if err := events.ValidateStreamID(stream); err != nil {
		return "", events.Event{}, err
	}

	raw := events.Raw{Type: md.Get(MetaType), SchemaVersion: 1}
	if raw.Type == "" {
		raw.Type = p.cfg.DefaultType
	}
	if s := md.Get(MetaSchemaVersion); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			return "", events.Event{}, fmt.Errorf("%w: metadata %s=%q is not a schema version (a whole number >= 1)", events.ErrInvalidEvent, MetaSchemaVersion, s)
		}
		raw.SchemaVersion = v
	}

	extra := map[string]string{}
	for k, v := range md {
		if !publishDropped[k] {
			extra[extraKey(k)] = v
		}
	}
	switch p.cfg.Encoding {
	case EncodingBase64:
		raw.Payload = encodeBase64Payload(msg.Payload)
		extra[MetaEncoding] = string(EncodingBase64)
	default:
		if !json.Valid(msg.Payload) {
			return "", events.Event{}, fmt.Errorf("%w: payload is not JSON (event payloads are JSON; set PublisherConfig.Encoding to feed.EncodingBase64 to store opaque bytes)",
				events.ErrInvalidEvent)
		}
		raw.Payload = append(json.RawMessage(nil), msg.Payload...)
	}

	ev := events.Event{
		Data: raw,
		Metadata: events.Metadata{
			CorrelationID: md.Get(MetaCorrelationID),
			CausationID:   md.Get(MetaCausationID),
		},
	}
	if msg.UUID != "" {
		ev.ID = uuid.NewSHA1(publishNamespace, []byte(stream+"\x00"+msg.UUID)).String()
		extra[MetaWatermillUUID] = msg.UUID
	}
	if len(extra) > 0 {
		ev.Metadata.Extra = extra
	}
	return stream, ev, nil
}

package events

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/google/uuid"
)

const (
	// DefaultMaxPayloadBytes is the default limit on one event's encoded
	// payload, and separately on its metadata.
	DefaultMaxPayloadBytes = 1 << 20
	// DefaultMaxEventsPerAppend is the default limit on events in one append.
	DefaultMaxEventsPerAppend = 1000
	// MaxStreamIDLength is the longest stream id, in bytes.
	MaxStreamIDLength = 200
	// DefaultReadLimit is how many events ReadAll returns when limit <= 0.
	DefaultReadLimit = 500
)

// Limits bounds what one append may contain. Both stores take it in their
// config.
type Limits struct {
	// MaxPayloadBytes caps one event's payload, counted as the larger of
	// its JSON bytes and what PostgreSQL gives them back as (numbers
	// written out in full, a space after each ',' and ':'; see
	// PayloadReadBackSize), and separately its metadata's size: the bytes of its correlation and
	// causation ids, and of each Extra key and value plus 6, not counting
	// JSON escapes (the stored form's size differs by store). Defaults to
	// DefaultMaxPayloadBytes (1 MiB).
	MaxPayloadBytes int
	// MaxEventsPerAppend caps the events in one append. Defaults to
	// DefaultMaxEventsPerAppend.
	MaxEventsPerAppend int
}

// WithDefaults fills unset fields.
func (l Limits) WithDefaults() Limits {
	if l.MaxPayloadBytes <= 0 {
		l.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	if l.MaxEventsPerAppend <= 0 {
		l.MaxEventsPerAppend = DefaultMaxEventsPerAppend
	}
	return l
}

// LimitsOf returns the limits store enforces on appends (both stores have
// a Limits method), or the defaults for a store that does not say.
func LimitsOf(store any) Limits {
	if l, ok := store.(interface{ Limits() Limits }); ok {
		return l.Limits()
	}
	return Limits{}.WithDefaults()
}

// Record is an event validated and encoded for storage. Stores build them
// with Prepare; applications do not need them.
type Record struct {
	ID       string
	Raw      Raw
	Metadata Metadata
}

// Prepare validates an append and encodes its events, assigning an id to
// every event that has none. Nothing is written unless it succeeds, so a
// bad event fails the whole append. Stores call it before anything else:
// it is the bad-input contract (see ValidateStreamID, ValidateTypeName,
// ValidatePayload and ValidateMetadata), and every error it returns wraps
// ErrInvalidEvent, ErrUnknownType or ErrDuplicateEvent.
//
// The ids it assigns are fixed from then on: a store that retries the
// append retries these records, never new ids.
func Prepare(reg *Registry, lim Limits, streamID string, expected ExpectedVersion, evs []Event) ([]Record, error) {
	lim = lim.WithDefaults()
	if err := ValidateStreamID(streamID); err != nil {
		return nil, err
	}
	if err := expected.validate(); err != nil {
		return nil, err
	}
	if len(evs) == 0 {
		return nil, fmt.Errorf("%w: append to %q with no events", ErrInvalidEvent, streamID)
	}
	if len(evs) > lim.MaxEventsPerAppend {
		return nil, fmt.Errorf("%w: %d events in one append, the limit is %d (split the append or raise Limits.MaxEventsPerAppend)",
			ErrInvalidEvent, len(evs), lim.MaxEventsPerAppend)
	}
	recs := make([]Record, len(evs))
	seen := make(map[string]bool, len(evs))
	for i, ev := range evs {
		raw, err := reg.Encode(ev.Data)
		if err != nil {
			return nil, fmt.Errorf("event %d of %d: %w", i+1, len(evs), err)
		}
		if err := ValidateTypeName(raw.Type); err != nil {
			return nil, fmt.Errorf("event %d of %d: %w", i+1, len(evs), err)
		}
		if raw.SchemaVersion < 1 || raw.SchemaVersion > MaxSchemaVersion {
			return nil, fmt.Errorf("%w: event %d (%q) has schema version %d, want 1 to %d (0 means 1)",
				ErrInvalidEvent, i+1, raw.Type, raw.SchemaVersion, MaxSchemaVersion)
		}
		if n := len(raw.Payload); n > lim.MaxPayloadBytes {
			return nil, fmt.Errorf("%w: event %d (%q) payload is %d bytes, the limit is %d", ErrInvalidEvent, i+1, raw.Type, n, lim.MaxPayloadBytes)
		}
		n, err := PayloadReadBackSize(raw.Payload)
		if err != nil {
			return nil, fmt.Errorf("%w: event %d (%q) payload %w", ErrInvalidEvent, i+1, raw.Type, err)
		}
		if n > lim.MaxPayloadBytes {
			return nil, fmt.Errorf("%w: event %d (%q) payload reads back from PostgreSQL as up to %d bytes (numbers written out in full, a space after each ',' and ':'), the limit is %d: send very large or very small numbers as strings, or split the event",
				ErrInvalidEvent, i+1, raw.Type, n, lim.MaxPayloadBytes)
		}
		if n := metadataSize(ev.Metadata); n > lim.MaxPayloadBytes {
			return nil, fmt.Errorf("%w: event %d (%q) metadata is %d bytes, the limit is %d", ErrInvalidEvent, i+1, raw.Type, n, lim.MaxPayloadBytes)
		}
		if err := ValidateMetadata(ev.Metadata); err != nil {
			return nil, fmt.Errorf("%w: event %d (%q) metadata: %w", ErrInvalidEvent, i+1, raw.Type, err)
		}
		meta := ev.Metadata
		if len(meta.Extra) == 0 {
			meta.Extra = nil // an empty map reads back as none on either store
		}
		id := ev.ID
		if id == "" {
			id = newUUID()
		} else if u, err := uuid.Parse(id); err != nil {
			return nil, fmt.Errorf("%w: event %d id %q is not a UUID", ErrInvalidEvent, i+1, id)
		} else {
			id = u.String() // one spelling per id, so duplicates are caught
		}
		if seen[id] {
			return nil, fmt.Errorf("%w: event id %s appears twice in one append", ErrDuplicateEvent, id)
		}
		seen[id] = true
		recs[i] = Record{ID: id, Raw: raw, Metadata: meta}
	}
	return recs, nil
}

// newUUID returns a version 7 UUID: time-ordered, so index inserts stay local.
func newUUID() string {
	u, err := uuid.NewV7()
	if err != nil {
		return uuid.Must(uuid.NewRandomFromReader(rand.Reader)).String()
	}
	return u.String()
}

// Clock is the time source of stores and services; tests replace it.
type Clock interface{ Now() time.Time }

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// metadataSize is the size Limits.MaxPayloadBytes documents for m: close to
// its JSON size, without encoding it.
func metadataSize(m Metadata) int {
	n := len(m.CorrelationID) + len(m.CausationID)
	for k, v := range m.Extra {
		n += len(k) + len(v) + 6
	}
	return n
}

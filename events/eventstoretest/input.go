package eventstoretest

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

// requireInvalidStreamID checks that every call taking a stream id refuses
// id with ErrInvalidEvent.
func requireInvalidStreamID(t *testing.T, s events.Store, id string) {
	t.Helper()
	ctx := t.Context()
	_, err := s.Append(ctx, id, events.AnyVersion, placed("o", 1))
	require.ErrorIs(t, err, events.ErrInvalidEvent, "Append to %q", id)
	_, err = s.ReadStream(ctx, id, 1, 0)
	require.ErrorIs(t, err, events.ErrInvalidEvent, "ReadStream of %q", id)
	_, err = s.StreamVersion(ctx, id)
	require.ErrorIs(t, err, events.ErrInvalidEvent, "StreamVersion of %q", id)
}

func testAtomicBatch(t *testing.T, s events.Store) {
	ctx := t.Context()
	mustAppend(t, s, "order-1", events.NoStream, placed("o", 1))
	bad := map[string]events.Event{
		"unregistered type": {Data: notRegistered{X: 1}},
		"invalid JSON":      {Data: events.Raw{Type: orderPlacedType, Payload: json.RawMessage(`{"order_id":`)}},
		"invalid id":        {ID: "not-a-uuid", Data: orderPlaced{OrderID: "o"}},
		"oversized":         {Data: orderPlaced{Note: strings.Repeat("x", events.DefaultMaxPayloadBytes)}},
	}
	total := 1
	for name, ev := range bad {
		_, err := s.Append(ctx, "order-1", events.Exactly(1), placed("o", 2), placed("o", 3), ev, placed("o", 4))
		require.Error(t, err, name)
		requireNothingWritten(t, s, "order-1", 1, total)
		total++ // the marker
	}
}

func testEmptyStreamID(t *testing.T, s events.Store) {
	requireInvalidStreamID(t, s, "")
	requireStoreHolds(t, s, 0)
}

func testStreamIDLength(t *testing.T, s events.Store) {
	longest := []string{
		strings.Repeat("x", events.MaxStreamIDLength),
		strings.Repeat("é", events.MaxStreamIDLength/2), // two bytes each: the limit is in bytes
	}
	for _, id := range longest {
		mustAppend(t, s, id, events.NoStream, placed("o", 1))
		got, err := s.ReadStream(t.Context(), id, 1, 0)
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, id, got[0].StreamID)
	}
	for _, id := range []string{
		strings.Repeat("x", events.MaxStreamIDLength+1),
		strings.Repeat("é", events.MaxStreamIDLength/2) + "x",
	} {
		requireInvalidStreamID(t, s, id)
	}
	requireStoreHolds(t, s, len(longest))
}

func testStreamIDControlCharacters(t *testing.T, s events.Store) {
	for _, id := range []string{"a\nb", "a\x00b", "tab\there", "cr\r", "del\x7f", "esc\x1b[31m", "a\xffb (invalid UTF-8)", "nel\u0085", "c1\u0080", "sep\u2028", "para\u2029"} {
		requireInvalidStreamID(t, s, id)
	}
	requireStoreHolds(t, s, 0)
}

// metacharacterIDs must work as stream ids: stores pass ids as parameters,
// never splice them into SQL or patterns.
var metacharacterIDs = []string{
	`'; DROP TABLE events; --`,
	`order-1' OR '1'='1`,
	`"double" and 'single' quotes`,
	`back\slash\\ and \'escaped\'`,
	`100%_like*?[a-z]`,
	`$1 $$ ::text /* comment */`,
	`ünïcödé/流/🚀`,
	` leading and trailing spaces `,
}

func testStreamIDMetacharacters(t *testing.T, s events.Store) {
	ctx := t.Context()
	for i, id := range metacharacterIDs {
		res := mustAppend(t, s, id, events.NoStream, placed("o", i))
		mustAppend(t, s, id, events.Exactly(1), placed("o", i))
		got, err := s.ReadStream(ctx, id, 1, 0)
		require.NoError(t, err)
		require.Len(t, got, 2, "stream %q", id)
		require.Equal(t, id, got[0].StreamID)
		require.Equal(t, res.EventIDs[0], got[0].ID)
		version, err := s.StreamVersion(ctx, id)
		require.NoError(t, err)
		require.Equal(t, int64(2), version, "stream %q", id)
	}
	all := awaitAll(t, s, 2*len(metacharacterIDs))
	for i, env := range all {
		require.Equal(t, metacharacterIDs[i/2], env.StreamID)
	}
}

// jsonString returns a JSON string document of exactly n bytes.
func jsonString(n int) json.RawMessage {
	return json.RawMessage(`"` + strings.Repeat("x", n-2) + `"`)
}

func testPayloadLimit(t *testing.T, s events.Store) {
	ctx := t.Context()
	limit := events.DefaultMaxPayloadBytes

	_, err := s.Append(ctx, "blob-1", events.AnyVersion, events.Event{Data: events.Raw{Type: "eventstoretest.blob", Payload: jsonString(limit + 1)}})
	require.ErrorIs(t, err, events.ErrInvalidEvent, "a raw payload one byte over the limit")
	_, err = s.Append(ctx, "blob-1", events.AnyVersion, events.Event{Data: orderPlaced{Note: strings.Repeat("x", limit)}})
	require.ErrorIs(t, err, events.ErrInvalidEvent, "a typed payload over the limit")
	requireNothingWritten(t, s, "blob-1", 0, 0)

	mustAppend(t, s, "blob-1", events.NoStream, events.Event{Data: events.Raw{Type: "eventstoretest.blob", Payload: jsonString(limit)}})
	got, err := s.ReadStream(ctx, "blob-1", 1, 0)
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Len(t, got[0].Payload, limit, "a payload at the limit is stored whole")
}

func testInvalidRawEvents(t *testing.T, s events.Store) {
	for name, raw := range map[string]events.Raw{
		"not JSON":        {Type: orderPlacedType, Payload: json.RawMessage(`not json`)},
		"truncated JSON":  {Type: orderPlacedType, Payload: json.RawMessage(`{"order_id":"o-1"`)},
		"empty payload":   {Type: orderPlacedType},
		"two documents":   {Type: orderPlacedType, Payload: json.RawMessage(`{} {}`)},
		"empty type name": {Payload: json.RawMessage(`{}`)},
	} {
		_, err := s.Append(t.Context(), "raw-1", events.AnyVersion, events.Event{Data: raw})
		require.ErrorIs(t, err, events.ErrInvalidEvent, name)
	}
	requireNothingWritten(t, s, "raw-1", 0, 0)
}

func testUnknownGoType(t *testing.T, s events.Store) {
	_, err := s.Append(t.Context(), "order-1", events.AnyVersion, events.Event{Data: notRegistered{X: 1}})
	require.ErrorIs(t, err, events.ErrUnknownType)
	var ute *events.UnknownTypeError
	require.ErrorAs(t, err, &ute)
	require.Contains(t, ute.GoType, "notRegistered", "the error names the Go type to register")

	_, err = s.Append(t.Context(), "order-1", events.AnyVersion, events.Event{})
	require.ErrorIs(t, err, events.ErrUnknownType, "nil Data")
	requireNothingWritten(t, s, "order-1", 0, 0)
}

func testEmptyAppend(t *testing.T, s events.Store) {
	_, err := s.Append(t.Context(), "order-1", events.AnyVersion)
	require.ErrorIs(t, err, events.ErrInvalidEvent)
	_, err = s.Append(t.Context(), "order-1", events.NoStream, []events.Event{}...)
	require.ErrorIs(t, err, events.ErrInvalidEvent)
	requireNothingWritten(t, s, "order-1", 0, 0)
}

func testTooManyEvents(t *testing.T, s events.Store) {
	evs := make([]events.Event, events.DefaultMaxEventsPerAppend+1)
	for i := range evs {
		evs[i] = events.Event{Data: counterBumped{N: i}}
	}
	_, err := s.Append(t.Context(), "counter-1", events.AnyVersion, evs...)
	require.ErrorIs(t, err, events.ErrInvalidEvent)
	requireNothingWritten(t, s, "counter-1", 0, 0)

	res := mustAppend(t, s, "counter-1", events.NoStream, evs[:events.DefaultMaxEventsPerAppend]...)
	require.Equal(t, int64(events.DefaultMaxEventsPerAppend), res.LastVersion, "exactly the limit is fine")
}

func testEventIDNotUUID(t *testing.T, s events.Store) {
	for _, id := range []string{"not-a-uuid", "'; DROP TABLE events; --", "1234"} {
		_, err := s.Append(t.Context(), "order-1", events.AnyVersion, events.Event{ID: id, Data: orderPlaced{}})
		require.ErrorIs(t, err, events.ErrInvalidEvent, "id %q", id)
	}
	requireNothingWritten(t, s, "order-1", 0, 0)
}

// testEventIDCanonical pins down that ids are UUIDs, not strings: another
// spelling of a stored id is the same id (PostgreSQL stores them as uuid).
func testEventIDCanonical(t *testing.T, s events.Store) {
	id := newID()
	res := mustAppend(t, s, "order-1", events.NoStream, events.Event{ID: strings.ToUpper(id), Data: orderPlaced{}})
	require.Equal(t, []string{id}, res.EventIDs, "ids are returned in canonical lower-case form")
	got, err := s.ReadStream(t.Context(), "order-1", 1, 0)
	require.NoError(t, err)
	require.Equal(t, id, got[0].ID)

	_, err = s.Append(t.Context(), "order-2", events.AnyVersion, events.Event{ID: id, Data: orderPlaced{}})
	require.ErrorIs(t, err, events.ErrDuplicateEvent, "the lower-case spelling of a stored id is a duplicate")
	requireNothingWritten(t, s, "order-2", 0, 1)
}

func testDuplicateEventIDInOneAppend(t *testing.T, s events.Store) {
	id := newID()
	_, err := s.Append(t.Context(), "order-1", events.AnyVersion,
		placed("o", 1), events.Event{ID: id, Data: orderPlaced{}}, events.Event{ID: id, Data: orderPlaced{}})
	require.ErrorIs(t, err, events.ErrDuplicateEvent)
	requireNothingWritten(t, s, "order-1", 0, 0)
}

func testDuplicateEventIDAcrossAppends(t *testing.T, s events.Store) {
	ctx := t.Context()
	stored := placed("o", 1)
	mustAppend(t, s, "order-1", events.NoStream, stored)

	// An id stored in another stream is refused, with the whole batch.
	fresh := placed("o", 2)
	_, err := s.Append(ctx, "order-2", events.NoStream, fresh, stored)
	require.ErrorIs(t, err, events.ErrDuplicateEvent)
	require.ErrorContains(t, err, "others are not")
	requireNothingWritten(t, s, "order-2", 0, 1)

	// The failed batch reserved nothing: its other event can be appended.
	res := mustAppend(t, s, "order-2", events.NoStream, fresh)
	require.Equal(t, []string{fresh.ID}, res.EventIDs)
}

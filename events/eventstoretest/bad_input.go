package eventstoretest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

// badInput is one append every store must refuse with ErrInvalidEvent
// before writing anything.
type badInput struct {
	name     string
	stream   string // defaults to "bad-1"
	expected events.ExpectedVersion
	ev       events.Event
	// mention is a piece of the error text that tells the caller what was
	// wrong, when the case pins one down.
	mention string
}

func raw(payload string) events.Event {
	return events.Event{Data: events.Raw{Type: orderPlacedType, Payload: json.RawMessage(payload)}}
}

func withMeta(m events.Metadata) events.Event {
	return events.Event{Data: orderPlaced{OrderID: "o"}, Metadata: m}
}

// BadInputs is the bad-input contract as a table: what PostgreSQL cannot
// store as given, and memory must therefore refuse too.
var badInputs = []badInput{
	// NUL, which PostgreSQL's text and jsonb cannot hold.
	{name: "NUL in a typed payload string", ev: events.Event{Data: orderPlaced{Note: "a\x00b"}}, mention: "NUL"},
	{name: "NUL escape in a raw payload", ev: raw(`{"note":"a\u0000b"}`), mention: "NUL"},
	{name: "NUL escape in a key", ev: raw(`{"a\u0000":1}`), mention: "NUL"},
	{name: "NUL in the correlation id", ev: withMeta(events.Metadata{CorrelationID: "c\x00"}), mention: "correlation id"},
	{name: "NUL in the causation id", ev: withMeta(events.Metadata{CausationID: "\x00"}), mention: "causation id"},
	{name: "NUL in an extra value", ev: withMeta(events.Metadata{Extra: map[string]string{"k": "v\x00"}}), mention: "NUL"},
	{name: "NUL in an extra key", ev: withMeta(events.Metadata{Extra: map[string]string{"k\x00": "v"}}), mention: "NUL"},
	{name: "NUL in a type name", ev: events.Event{Data: events.Raw{Type: "bad\x00type", Payload: json.RawMessage(`{}`)}}, mention: "type name"},

	// Invalid UTF-8, which PostgreSQL refuses or replaces.
	{name: "invalid UTF-8 in a raw payload", ev: raw("{\"note\":\"\xff\"}")},
	{name: "invalid UTF-8 in the correlation id", ev: withMeta(events.Metadata{CorrelationID: "\xc3("}), mention: "UTF-8"},
	{name: "invalid UTF-8 in an extra value", ev: withMeta(events.Metadata{Extra: map[string]string{"k": "\xed\xa0\x80"}}), mention: "UTF-8"},
	{name: "invalid UTF-8 in a type name", ev: events.Event{Data: events.Raw{Type: "t\xff", Payload: json.RawMessage(`{}`)}}, mention: "UTF-8"},

	// Lone surrogates, which encode no character.
	{name: "lone high surrogate", ev: raw(`{"note":"\ud800"}`), mention: "surrogate"},
	{name: "lone low surrogate", ev: raw(`["\udc00"]`), mention: "surrogate"},
	{name: "high surrogate before a non-surrogate", ev: raw(`"\ud800\u0041"`), mention: "surrogate"},
	{name: "high surrogate at the end of a string", ev: raw(`{"a":"x\uDBFF"}`), mention: "surrogate"},
	{name: "lone surrogate in a key", ev: raw(`{"\ud800":1}`), mention: "surrogate"},

	// Numbers outside float64's range.
	{name: "huge exponent", ev: raw(`{"n":1e1000000}`), mention: "float64"},
	{name: "just past float64", ev: raw(`[1.7976931348623159e308]`), mention: "float64"},
	{name: "negative overflow", ev: raw(`-1e400`), mention: "float64"},
	{name: "underflow to zero", ev: raw(`{"n":1e-400}`), mention: "rounds to 0"},
	{name: "long underflow", ev: raw(`{"n":0.` + strings.Repeat("0", 400) + `1}`), mention: "rounds to 0"},
	{name: "zero with a huge negative exponent", ev: raw(`{"n":0e-20000}`), mention: "after the decimal point"},
	{name: "one with too many decimals", ev: raw(`[1.` + strings.Repeat("0", events.MaxNumberScale+1) + `]`), mention: "after the decimal point"},
	{name: "exponent past int", ev: raw(`[0e-99999999999999999999999]`), mention: "exponent"},
	{name: "zero with a huge exponent", ev: raw(`[0e2147483647]`), mention: "exponent"},

	// Duplicate keys, of which PostgreSQL keeps only the last.
	{name: "duplicate key", ev: raw(`{"a":1,"a":2}`), mention: "twice"},
	{name: "duplicate key spelled with an escape", ev: raw(`{"a":1,"\u0061":2}`), mention: "twice"},
	{name: "duplicate key in a nested object", ev: raw(`[{"x":{"b":1,"c":[],"b":true}}]`), mention: "twice"},

	// Keys converge reserves for itself.
	{name: "the applied-marks key", ev: withMeta(events.Metadata{Extra: map[string]string{events.AppliedMarksKey: "orders"}}), mention: "reserves"},

	// Type names and schema versions.
	{name: "newline in a type name", ev: events.Event{Data: events.Raw{Type: "a\nb", Payload: json.RawMessage(`{}`)}}, mention: "control character"},
	{name: "C1 control in a type name", ev: events.Event{Data: events.Raw{Type: "a\u0085b", Payload: json.RawMessage(`{}`)}}, mention: "U+0085"},
	{
		name:    "10 KB type name",
		ev:      events.Event{Data: events.Raw{Type: strings.Repeat("t", 10_000), Payload: json.RawMessage(`{}`)}},
		mention: "limit",
	},
	{name: "negative schema version", ev: events.Event{Data: events.Raw{Type: orderPlacedType, SchemaVersion: -1, Payload: json.RawMessage(`{}`)}}, mention: "schema version"},
	{
		name:    "schema version past int32",
		ev:      events.Event{Data: events.Raw{Type: orderPlacedType, SchemaVersion: events.MaxSchemaVersion + 1, Payload: json.RawMessage(`{}`)}},
		mention: "schema version",
	},

	// Stream ids and expected versions.
	{name: "NEL (U+0085) in a stream id", stream: "a\u0085b", ev: placed("o", 1), mention: "U+0085"},
	{name: "C1 control U+009F in a stream id", stream: "a\u009fb", ev: placed("o", 1), mention: "U+009F"},
	{name: "line separator in a stream id", stream: "a\u2028b", ev: placed("o", 1), mention: "U+2028"},
	{name: "paragraph separator in a stream id", stream: "a\u2029b", ev: placed("o", 1), mention: "U+2029"},
	{name: "Exactly(-5)", expected: events.Exactly(-5), ev: placed("o", 1), mention: "Exactly(-5)"},
	{name: "Exactly of the most negative version", expected: events.Exactly(-1 << 63), ev: placed("o", 1), mention: "never negative"},
}

func testBadInput(t *testing.T, s events.Store) {
	ctx := t.Context()
	for _, tc := range badInputs {
		stream := tc.stream
		if stream == "" {
			stream = "bad-1"
		}
		// Each bad event travels with good ones: the whole append fails.
		_, err := s.Append(ctx, stream, tc.expected, placed("o", 1), tc.ev, placed("o", 2))
		require.ErrorIs(t, err, events.ErrInvalidEvent, tc.name)
		require.NotErrorIs(t, err, events.ErrWrongExpectedVersion, "%s: bad input is not a conflict", tc.name)
		require.NotContains(t, err.Error(), "SQLSTATE", "%s: refused before any SQL", tc.name)
		require.NotContains(t, err.Error(), "4611686018427387904", tc.name)
		require.Contains(t, err.Error(), tc.mention, "%s: the error says what is wrong", tc.name)
	}
	requireNothingWritten(t, s, "bad-1", 0, 0)
}

func testReadStreamNegativeVersion(t *testing.T, s events.Store) {
	mustAppend(t, s, "order-1", events.NoStream, placed("o", 1))
	for _, from := range []int64{-1, -5, -1 << 63} {
		_, err := s.ReadStream(t.Context(), "order-1", from, 0)
		require.ErrorIs(t, err, events.ErrInvalidEvent, "fromVersion %d", from)
		require.ErrorContains(t, err, "negative")
	}
}

// goodInputs are edge cases every store must accept and read back as given.
var goodInputs = []struct {
	name   string
	stream string
	ev     events.Event
}{
	{"escapes of every kind", "good-1", raw(`{"s":"\u0001\t\"\\\/ \u00e9 é 😀 \ud83d\ude00 \uFFFF"}`)},
	{"numbers at float64's edges", "good-1", raw(`[1.7976931348623157e308,-1.7976931348623157e308,5e-324,0,-0,0.0e-399,0e9999,1E2,1.50,-12345678901234567890123]`)},
	{"deep nesting and empty containers", "good-1", raw(`{"a":[[[{}]],{"b":{"c":[]}}],"":null,"t":true}`)},
	{"same key in different objects", "good-1", raw(`{"a":{"a":1},"b":[{"a":1},{"a":2}]}`)},
	{"whitespace and key order", "good-1", raw(" { \"z\" : 1 ,\n\t\"a\" : [ 2 ] } ")},
	{"control characters in metadata", "good-1", withMeta(events.Metadata{CorrelationID: "tab\there", CausationID: "new\nline \u0085", Extra: map[string]string{"\x01": "\u2028 流"}})},
	{"type name with Unicode", "good-1", events.Event{Data: events.Raw{Type: "eventstoretest.ünïcödé-流", SchemaVersion: events.MaxSchemaVersion, Payload: json.RawMessage(`{}`)}}},
	{"type name at the limit", "good-1", events.Event{Data: events.Raw{Type: strings.Repeat("t", events.MaxTypeNameLength), Payload: json.RawMessage(`{}`)}}},
	{"format characters in a stream id", "zero\u200bwidth\ufeff-bom", placed("o", 1)},
	{"empty extra map", "good-1", withMeta(events.Metadata{Extra: map[string]string{}})},
}

func testGoodInputRoundTrip(t *testing.T, s events.Store) {
	for _, tc := range goodInputs {
		res, err := s.Append(t.Context(), tc.stream, events.AnyVersion, tc.ev)
		require.NoError(t, err, tc.name)
		got, err := s.ReadStream(t.Context(), tc.stream, res.FirstVersion, 1)
		require.NoError(t, err, tc.name)
		require.Len(t, got, 1, tc.name)
		RequireStoredAsGiven(t, s.Registry(), tc.ev, got[0])
	}
}

// testMixedDefaultsInOneAppend appends batches in which only some events
// carry metadata or a schema version other than 1, in every position, so
// a store that sends defaults in bulk (pgstore sends none when all are
// defaults) must still store each event's own values.
func testMixedDefaultsInOneAppend(t *testing.T, s events.Store) {
	meta := events.Metadata{CorrelationID: "corr", CausationID: "cause", Extra: map[string]string{"k": "v"}}
	v3 := func(payload string) events.Event {
		return events.Event{Data: events.Raw{Type: orderPlacedType, SchemaVersion: 3, Payload: json.RawMessage(payload)}}
	}
	batches := [][]events.Event{
		{raw(`{"n":1}`), withMeta(meta), v3(`{"n":3}`), raw(`{"n":4}`)},
		{withMeta(events.Metadata{CausationID: "c"}), raw(`{"n":2}`)},
		{v3(`{"n":1}`), raw(`{"n":2}`), withMeta(events.Metadata{Extra: map[string]string{"only": "extra"}})},
		{raw(`{"n":1}`), raw(`{"n":2}`)},
	}
	for i, evs := range batches {
		stream := fmt.Sprintf("mixed-%d", i)
		res, err := s.Append(t.Context(), stream, events.AnyVersion, evs...)
		require.NoError(t, err)
		got, err := s.ReadStream(t.Context(), stream, res.FirstVersion, 0)
		require.NoError(t, err)
		require.Len(t, got, len(evs))
		for j, ev := range evs {
			RequireStoredAsGiven(t, s.Registry(), ev, got[j])
		}
	}
}

// RequireStoredAsGiven checks that env, read back from a store, holds ev as
// appended: the same type, schema version and metadata, and a payload
// equal by events.EqualJSON (byte-identical strings, numbers of equal
// value; PostgreSQL normalises whitespace, key order and number spelling).
func RequireStoredAsGiven(t testing.TB, reg *events.Registry, ev events.Event, env events.Envelope) {
	t.Helper()
	want, err := reg.Encode(ev.Data)
	require.NoError(t, err)
	require.Equal(t, want.Type, env.Type)
	require.Equal(t, max(want.SchemaVersion, 1), env.SchemaVersion)
	require.True(t, events.EqualJSON(want.Payload, env.Payload), "payload %s read back as %s", want.Payload, env.Payload)
	meta := ev.Metadata
	if len(meta.Extra) == 0 {
		meta.Extra = nil
	}
	require.Equal(t, meta, env.Metadata)
	if ev.ID != "" {
		require.Equal(t, ev.ID, env.ID)
	}
}

package eventstoretest

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

// storeTest is one behaviour every events.Store must have.
type storeTest struct {
	name string
	fn   func(t *testing.T, s events.Store)
}

// storeTests lists the suite. Each runs on a fresh store, in parallel.
var storeTests = []storeTest{
	{"AppendReadRoundTrip", testAppendReadRoundTrip},
	{"ReadStreamFromVersionAndLimit", testReadStreamFromVersionAndLimit},
	{"ReadAllAfterTokenWithLimit", testReadAllAfterTokenWithLimit},
	{"ReadAllDefaultLimit", testReadAllDefaultLimit},
	{"Head", testHead},
	{"ExpectedVersionNoStream", testExpectedVersionNoStream},
	{"ExpectedVersionStreamExists", testExpectedVersionStreamExists},
	{"ExpectedVersionExactly", testExpectedVersionExactly},
	{"ExpectedVersionAny", testExpectedVersionAny},
	{"ExpectedVersionNegative", testExpectedVersionNegative},
	{"AtomicBatch", testAtomicBatch},
	{"EmptyStreamID", testEmptyStreamID},
	{"StreamIDLength", testStreamIDLength},
	{"StreamIDControlCharacters", testStreamIDControlCharacters},
	{"StreamIDMetacharacters", testStreamIDMetacharacters},
	{"PayloadLimit", testPayloadLimit},
	{"InvalidRawEvents", testInvalidRawEvents},
	{"BadInput", testBadInput},
	{"GoodInputRoundTrip", testGoodInputRoundTrip},
	{"MixedDefaultsInOneAppend", testMixedDefaultsInOneAppend},
	{"ReadStreamNegativeVersion", testReadStreamNegativeVersion},
	{"UnknownGoType", testUnknownGoType},
	{"EmptyAppend", testEmptyAppend},
	{"TooManyEvents", testTooManyEvents},
	{"EventIDNotUUID", testEventIDNotUUID},
	{"EventIDCanonical", testEventIDCanonical},
	{"DuplicateEventIDInOneAppend", testDuplicateEventIDInOneAppend},
	{"DuplicateEventIDAcrossAppends", testDuplicateEventIDAcrossAppends},
	{"RetryIsIdempotent", testRetryIsIdempotent},
	{"RetryOfNewStream", testRetryOfNewStream},
	{"RetryThatIsNotTheSameAppend", testRetryThatIsNotTheSameAppend},
	{"ConcurrentRetries", testConcurrentRetries},
	{"DecodeWithUpcaster", testDecodeWithUpcaster},
	{"DecodeUnknownTypeName", testDecodeUnknownTypeName},
	{"RenamedTypeWithAlias", testRenamedTypeWithAlias},
	{"CanceledContext", testCanceledContext},
	{"ConcurrentWriters", testConcurrentWriters},
	{"BadInputBeforeCanceledContext", testBadInputBeforeCanceledContext},
	{"EmptyReadsAreEmptySlices", testEmptyReadsAreEmptySlices},
	{"NumbersRoundTrip", testNumbersRoundTrip},
}

// Run runs the store suite. newStore must return a fresh, empty store for
// each call, built with a registry from Registry() and default
// events.Limits, and clean it up with t.Cleanup. Subtests run in parallel.
func Run(t *testing.T, newStore func(t *testing.T) events.Store) {
	t.Helper()
	for _, tc := range storeTests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			requireSuiteRegistry(t, s.Registry())
			tc.fn(t, s)
		})
	}
}

// requireSuiteRegistry fails early, and says why, when the store under
// test was built without Registry().
func requireSuiteRegistry(t *testing.T, reg *events.Registry) {
	t.Helper()
	require.NotNil(t, reg, "the store has no registry: construct it with eventstoretest.Registry()")
	for _, v := range []any{orderPlaced{}, counterBumped{}, addressChanged{}} {
		_, _, err := reg.NameOf(v)
		require.NoError(t, err, "the store's registry lacks the suite's types: construct it with eventstoretest.Registry()")
	}
}

func testAppendReadRoundTrip(t *testing.T, s events.Store) {
	ctx := t.Context()
	meta := events.Metadata{
		CorrelationID: "corr-" + newID(),
		CausationID:   "cause-" + newID(),
		Extra:         map[string]string{"tenant": "acme", "user": "ünïcödé 流", "quote": `it's "fine"`},
	}
	first := events.Event{ID: newID(), Data: orderPlaced{OrderID: "o-1", Amount: 42, Note: "first"}, Metadata: meta}
	second := events.Event{Data: orderPlaced{OrderID: "o-1", Amount: 7}} // id left to the store

	res := mustAppend(t, s, "order-1", events.NoStream, first, second)
	require.Equal(t, "order-1", res.StreamID)
	require.False(t, res.AlreadyStored, "a new append stores its events")
	require.Equal(t, int64(1), res.FirstVersion)
	require.Equal(t, int64(2), res.LastVersion)
	require.Len(t, res.EventIDs, 2)
	require.Equal(t, first.ID, res.EventIDs[0], "a caller-chosen id is kept")
	_, err := uuid.Parse(res.EventIDs[1])
	require.NoError(t, err, "a generated id is a UUID")
	require.NotEqual(t, res.EventIDs[0], res.EventIDs[1])

	got, err := s.ReadStream(ctx, "order-1", 1, 0)
	require.NoError(t, err)
	require.Len(t, got, 2)
	for i, env := range got {
		require.Equal(t, res.EventIDs[i], env.ID)
		require.Equal(t, "order-1", env.StreamID)
		require.Equal(t, int64(i+1), env.Version)
		require.Equal(t, orderPlacedType, env.Type)
		require.Equal(t, 1, env.SchemaVersion)
		// Wide, because on PostgreSQL the server's clock stamps the event.
		require.WithinDuration(t, time.Now(), env.RecordedAt, time.Minute)
	}
	require.JSONEq(t, `{"order_id":"o-1","amount":42,"note":"first"}`, string(got[0].Payload))
	require.JSONEq(t, `{"order_id":"o-1","amount":7}`, string(got[1].Payload))
	require.Equal(t, meta, got[0].Metadata)
	require.Equal(t, events.Metadata{}, got[1].Metadata, "empty metadata reads back empty")

	v, err := s.Registry().Decode(got[0])
	require.NoError(t, err)
	require.Equal(t, first.Data, v)
	op, err := events.DecodeAs[orderPlaced](s.Registry(), got[1])
	require.NoError(t, err)
	require.Equal(t, second.Data, op)

	require.True(t, got[0].Token.Before(got[1].Token))
	require.Equal(t, got[1].Token, res.Token, "AppendResult.Token is the token of the last appended event")
	require.Equal(t, []events.Token{got[0].Token, got[1].Token}, res.Tokens, "AppendResult.Tokens are the appended events' tokens")

	version, err := s.StreamVersion(ctx, "order-1")
	require.NoError(t, err)
	require.Equal(t, int64(2), version)

	require.Equal(t, got, awaitAll(t, s, 2), "ReadAll and ReadStream return the same envelopes")

	again := mustAppend(t, s, "order-1", events.Exactly(2), placed("o-1", 1))
	require.Equal(t, int64(3), again.FirstVersion)
	require.Equal(t, int64(3), again.LastVersion)
	require.True(t, res.Token.Before(again.Token), "a later append gets a later token")
}

func testReadStreamFromVersionAndLimit(t *testing.T, s events.Store) {
	ctx := t.Context()
	var want []string
	for _, n := range []int{4, 3, 3} {
		evs := make([]events.Event, n)
		for i := range evs {
			evs[i] = placed("o", len(want)+i)
		}
		res := mustAppend(t, s, "order-7", events.AnyVersion, evs...)
		want = append(want, res.EventIDs...)
	}
	mustAppend(t, s, "order-8", events.NoStream, placed("other", 0))

	cases := []struct {
		name     string
		from     int64
		limit    int
		versions []int64
	}{
		{"all", 1, 0, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"from zero means from the start", 0, 0, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{"from the middle with a limit", 4, 3, []int64{4, 5, 6}},
		{"a negative limit means no limit", 8, -1, []int64{8, 9, 10}},
		{"limit past the end", 9, 50, []int64{9, 10}},
		{"last", 10, 0, []int64{10}},
		{"past the end", 11, 0, nil},
	}
	for _, tc := range cases {
		got, err := s.ReadStream(ctx, "order-7", tc.from, tc.limit)
		require.NoError(t, err, tc.name)
		require.Len(t, got, len(tc.versions), tc.name)
		for i, env := range got {
			require.Equal(t, tc.versions[i], env.Version, tc.name)
			require.Equal(t, want[env.Version-1], env.ID, tc.name)
			require.Equal(t, "order-7", env.StreamID, tc.name)
		}
		requireOrdered(t, got)
	}

	got, err := s.ReadStream(ctx, "order-never-written", 1, 0)
	require.NoError(t, err, "a stream without events reads as empty")
	require.Empty(t, got)
	version, err := s.StreamVersion(ctx, "order-never-written")
	require.NoError(t, err)
	require.Zero(t, version)
}

func testReadAllAfterTokenWithLimit(t *testing.T, s events.Store) {
	ctx := t.Context()
	streams := []string{"a-1", "b-1", "c-1"}
	var appended []string
	for i := range 10 {
		res := mustAppend(t, s, streams[i%3], events.AnyVersion, placed("o", i))
		appended = append(appended, res.EventIDs...)
	}
	all := awaitAll(t, s, 10)
	require.Equal(t, appended, ids(all), "sequential appends keep their order globally")
	requireOrdered(t, all)

	page, err := s.ReadAll(ctx, events.Token{}, 3)
	require.NoError(t, err)
	require.Equal(t, all[:3], page)
	page, err = s.ReadAll(ctx, all[3].Token, 4)
	require.NoError(t, err)
	require.Equal(t, all[4:8], page, "ReadAll starts strictly after the token")
	page, err = s.ReadAll(ctx, all[7].Token, 100)
	require.NoError(t, err)
	require.Equal(t, all[8:], page)
	page, err = s.ReadAll(ctx, all[9].Token, 100)
	require.NoError(t, err)
	require.Empty(t, page, "nothing after the newest event")

	// The global order agrees with every stream's own order.
	for _, id := range streams {
		stream, err := s.ReadStream(ctx, id, 1, 0)
		require.NoError(t, err)
		var inAll []events.Envelope
		for _, env := range all {
			if env.StreamID == id {
				inAll = append(inAll, env)
			}
		}
		require.Equal(t, stream, inAll, "stream %q", id)
	}
}

func testReadAllDefaultLimit(t *testing.T, s events.Store) {
	evs := make([]events.Event, events.DefaultReadLimit+1)
	for i := range evs {
		evs[i] = events.Event{Data: counterBumped{N: i}}
	}
	mustAppend(t, s, "counter-1", events.NoStream, evs...)
	awaitAll(t, s, len(evs))
	for _, limit := range []int{0, -1} {
		page, err := s.ReadAll(t.Context(), events.Token{}, limit)
		require.NoError(t, err)
		require.Len(t, page, events.DefaultReadLimit, "limit %d means events.DefaultReadLimit", limit)
	}
}

func testHead(t *testing.T, s events.Store) {
	ctx := t.Context()
	head, err := s.Head(ctx)
	require.NoError(t, err)
	require.True(t, head.IsZero(), "an empty store's head is the zero token")

	for i, stream := range []string{"h-1", "h-2", "h-1"} {
		res := mustAppend(t, s, stream, events.AnyVersion, placed("o", i), placed("o", i))
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			head, err := s.Head(ctx)
			require.NoError(c, err)
			require.Equal(c, res.Token, head, "Head is the token of the newest event")
		}, waitFor, pollEvery)
	}
	head, err = s.Head(ctx)
	require.NoError(t, err)
	page, err := s.ReadAll(ctx, head, 0)
	require.NoError(t, err)
	require.Empty(t, page, "nothing after the head")
}

func testDecodeWithUpcaster(t *testing.T, s events.Store) {
	reg := s.Registry()
	res := mustAppend(t, s, "customer-1", events.NoStream,
		events.Event{Data: events.Raw{Type: addressChangedType, SchemaVersion: 1, Payload: json.RawMessage(`{"address":"1 Main St, Springfield"}`)}},
		events.Event{Data: addressChanged{Street: "2 High St", City: "Shelbyville"}},
		events.Event{Data: events.Raw{Type: orderPlacedType, Payload: json.RawMessage(`{"order_id":"o-9","amount":9}`)}},
		events.Event{Data: events.Raw{Type: addressChangedType, SchemaVersion: 3, Payload: json.RawMessage(`{"street":"x","city":"y","zip":"z"}`)}},
	)
	got, err := s.ReadStream(t.Context(), "customer-1", 1, 0)
	require.NoError(t, err)
	require.Len(t, got, 4)
	require.Equal(t, res.EventIDs, ids(got))

	require.Equal(t, 1, got[0].SchemaVersion, "a raw event keeps its schema version")
	v, err := reg.Decode(got[0])
	require.NoError(t, err)
	require.Equal(t, addressChanged{Street: "1 Main St", City: "Springfield"}, v, "v1 is upcast to the current type")

	require.Equal(t, 2, got[1].SchemaVersion, "a typed event is stored at its registered version")
	v, err = reg.Decode(got[1])
	require.NoError(t, err)
	require.Equal(t, addressChanged{Street: "2 High St", City: "Shelbyville"}, v)

	require.Equal(t, 1, got[2].SchemaVersion, "a raw event without a schema version is stored as v1")
	v, err = reg.Decode(got[2])
	require.NoError(t, err)
	require.Equal(t, orderPlaced{OrderID: "o-9", Amount: 9}, v)

	_, err = reg.Decode(got[3])
	require.ErrorIs(t, err, events.ErrDecode, "a schema newer than the registry's cannot be decoded")
	var de *events.DecodeError
	require.ErrorAs(t, err, &de)
	require.Equal(t, addressChangedType, de.Type)
}

func testDecodeUnknownTypeName(t *testing.T, s events.Store) {
	mustAppend(t, s, "legacy-1", events.NoStream,
		events.Event{Data: events.Raw{Type: neverRegisteredType, Payload: json.RawMessage(`{"x":1}`)}})
	got, err := s.ReadStream(t.Context(), "legacy-1", 1, 0)
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, neverRegisteredType, got[0].Type)
	require.JSONEq(t, `{"x":1}`, string(got[0].Payload), "unknown events can still be read as raw JSON")

	_, err = s.Registry().Decode(got[0])
	require.ErrorIs(t, err, events.ErrUnknownType)
	var ute *events.UnknownTypeError
	require.ErrorAs(t, err, &ute)
	require.Equal(t, neverRegisteredType, ute.Name)
}

func testCanceledContext(t *testing.T, s events.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := s.Append(ctx, "order-1", events.AnyVersion, placed("o", 1))
	require.ErrorIs(t, err, context.Canceled)
	requireNothingWritten(t, s, "order-1", 0, 0)
}

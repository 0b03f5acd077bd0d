package eventstoretest

import (
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

// A retried append (the same events: ids, stream, positions and content)
// returns the original result and writes nothing, whatever expected version
// the retry states, as long as it describes where the events landed.

func testRetryIsIdempotent(t *testing.T, s events.Store) {
	ctx := t.Context()
	mustAppend(t, s, "order-1", events.NoStream, placed("o", 0), placed("o", 0))
	batch := []events.Event{placed("o", 1), placed("o", 2)}
	first := mustAppend(t, s, "order-1", events.Exactly(2), batch...)
	require.Equal(t, int64(3), first.FirstVersion)

	// The lost-reply retry, with the first attempt's expected version:
	// not a conflict.
	require.False(t, first.AlreadyStored)
	again, err := s.Append(ctx, "order-1", events.Exactly(2), batch...)
	require.NoError(t, err, "a retry with the first Exactly(n) is not a conflict")
	requireReplay(t, first, again)

	// Others may append meanwhile; the retry still returns where it landed.
	mustAppend(t, s, "order-1", events.AnyVersion, placed("o", 3))
	for _, expected := range []events.ExpectedVersion{events.AnyVersion, events.Exactly(2), events.StreamExists} {
		again, err = s.Append(ctx, "order-1", expected, batch...)
		require.NoError(t, err, "retry with %s", expected)
		requireReplay(t, first, again)
	}
	// Ids in another spelling are the same ids.
	upper := []events.Event{batch[0], batch[1]}
	upper[0].ID = strings.ToUpper(upper[0].ID)
	again, err = s.Append(ctx, "order-1", events.AnyVersion, upper...)
	require.NoError(t, err)
	requireReplay(t, first, again)

	requireNothingWritten(t, s, "order-1", 5, 5)
}

func testRetryOfNewStream(t *testing.T, s events.Store) {
	ctx := t.Context()
	meta := events.Metadata{CorrelationID: "c-1", Extra: map[string]string{"k": "v"}}
	batch := []events.Event{
		{ID: newID(), Data: events.Raw{Type: orderPlacedType, Payload: []byte(`{ "order_id" : "o-1", "amount": 1E2 }`)}, Metadata: meta},
		placed("o", 2),
	}
	first := mustAppend(t, s, "order-1", events.NoStream, batch...)
	for _, expected := range []events.ExpectedVersion{events.NoStream, events.AnyVersion, events.Exactly(0)} {
		again, err := s.Append(ctx, "order-1", expected, batch...)
		require.NoError(t, err, "retry with %s", expected)
		requireReplay(t, first, again)
	}
	// The same payload spelled differently (PostgreSQL normalises it) is
	// the same content.
	respelled := append([]events.Event(nil), batch...)
	respelled[0].Data = events.Raw{Type: orderPlacedType, Payload: []byte(`{"amount":100,"order_id":"o-1"}`)}
	again, err := s.Append(ctx, "order-1", events.AnyVersion, respelled...)
	require.NoError(t, err)
	requireReplay(t, first, again)
	requireNothingWritten(t, s, "order-1", 2, 2)
}

func testRetryThatIsNotTheSameAppend(t *testing.T, s events.Store) {
	ctx := t.Context()
	mustAppend(t, s, "order-1", events.NoStream, placed("o", 0))
	e1, e2 := placed("o", 1), placed("o", 2)
	mustAppend(t, s, "order-1", events.AnyVersion, e1, e2) // versions 2 and 3

	changed := e1
	changed.Data = orderPlaced{OrderID: "o", Amount: 99}
	withMeta := e1
	withMeta.Metadata = events.Metadata{CorrelationID: "other"}
	cases := []struct {
		name     string
		stream   string
		expected events.ExpectedVersion
		evs      []events.Event
		mention  string
	}{
		{"another expected version", "order-1", events.NoStream, []events.Event{e1, e2}, "expected version"},
		{"an Exactly that does not fit", "order-1", events.Exactly(2), []events.Event{e1, e2}, "expected version"},
		{"another stream", "order-2", events.AnyVersion, []events.Event{e1, e2}, `stream "order-1"`},
		{"another order", "order-1", events.AnyVersion, []events.Event{e2, e1}, "order"},
		{"partly new", "order-1", events.AnyVersion, []events.Event{e1, e2, placed("o", 3)}, "others are not"},
		{"other content", "order-1", events.AnyVersion, []events.Event{changed, e2}, "different content"},
		{"other metadata", "order-1", events.AnyVersion, []events.Event{withMeta, e2}, "different content"},
	}
	for _, tc := range cases {
		_, err := s.Append(ctx, tc.stream, tc.expected, tc.evs...)
		require.ErrorIs(t, err, events.ErrDuplicateEvent, tc.name)
		require.NotErrorIs(t, err, events.ErrWrongExpectedVersion, tc.name)
		require.ErrorContains(t, err, tc.mention, tc.name)
	}
	// A stored event appended again alone is where it was stored.
	res, err := s.Append(ctx, "order-1", events.Exactly(2), e2)
	require.NoError(t, err)
	require.Equal(t, int64(3), res.FirstVersion)
	require.Equal(t, []string{e2.ID}, res.EventIDs)

	requireNothingWritten(t, s, "order-1", 3, 3)
	requireNothingWritten(t, s, "order-2", 0, 4) // the marker of the first check
}

// testConcurrentRetries races many copies of one append: exactly one
// stores the events, and every copy reports the same result.
func testConcurrentRetries(t *testing.T, s events.Store) {
	const copies = 8
	for round := range 5 {
		stream := "race-" + newID()
		batch := []events.Event{placed("o", round), placed("o", round)}
		expected := []events.ExpectedVersion{events.AnyVersion, events.NoStream}[round%2]
		results := make([]events.AppendResult, copies)
		errs := make([]error, copies)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range copies {
			wg.Go(func() {
				<-start
				results[i], errs[i] = s.Append(t.Context(), stream, expected, batch...)
			})
		}
		close(start)
		wg.Wait()
		writers := 0
		for i := range copies {
			require.NoError(t, errs[i], "copy %d of round %d", i, round)
			if !results[i].AlreadyStored {
				writers++
			}
			results[i].AlreadyStored = false
			require.Equal(t, results[0], results[i], "every copy reports the same result")
		}
		require.Equal(t, 1, writers, "exactly one copy stored the events")
		got, err := s.ReadStream(t.Context(), stream, 1, 0)
		require.NoError(t, err)
		require.Len(t, got, 2, "the events are stored once")
		require.Equal(t, results[0].EventIDs, ids(got))
	}
}

// requireReplay checks that a retry returned the original result, marked
// as a replay.
func requireReplay(t *testing.T, first, again events.AppendResult) {
	t.Helper()
	require.True(t, again.AlreadyStored, "a retry says it wrote nothing")
	first.AlreadyStored = true
	require.Equal(t, first, again, "a retry returns the original result")
}

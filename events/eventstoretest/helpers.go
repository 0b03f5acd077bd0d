package eventstoretest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

// waitFor bounds every wait on a condition. It is generous because on
// PostgreSQL the global order only shows an append once every transaction
// older than it has ended, server-wide, and the tests of other packages
// running beside these keep transactions open (a failed PostgreSQL test
// logs the ones open then, with the test that opened each).
const waitFor = 30 * time.Second

// pollEvery is how often a waited-on condition is checked again.
const pollEvery = 5 * time.Millisecond

// newID returns a fresh event id.
func newID() string { return uuid.NewString() }

// placed returns an orderPlaced event with a fresh id.
func placed(orderID string, amount int) events.Event {
	return events.Event{ID: newID(), Data: orderPlaced{OrderID: orderID, Amount: amount}}
}

// mustAppend appends and fails the test on error.
func mustAppend(t *testing.T, s events.Store, streamID string, expected events.ExpectedVersion, evs ...events.Event) events.AppendResult {
	t.Helper()
	res, err := s.Append(t.Context(), streamID, expected, evs...)
	require.NoError(t, err, "append to %q", streamID)
	return res
}

// readAllPages reads the whole global order, page by page.
func readAllPages(ctx context.Context, s events.Store) ([]events.Envelope, error) {
	var (
		out   []events.Envelope
		after events.Token
	)
	for {
		page, err := s.ReadAll(ctx, after, 100)
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			return out, nil
		}
		out = append(out, page...)
		after = page[len(page)-1].Token
	}
}

// awaitAll waits until the global order shows at least n events and
// requires that it shows exactly n.
func awaitAll(t *testing.T, s events.Store, n int) []events.Envelope {
	t.Helper()
	var all []events.Envelope
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var err error
		all, err = readAllPages(t.Context(), s)
		require.NoError(c, err)
		require.GreaterOrEqual(c, len(all), n, "events shown by ReadAll")
	}, waitFor, pollEvery)
	require.Len(t, all, n, "ReadAll shows more events than were appended")
	return all
}

// requireNothingWritten checks that a failed append left no trace: the
// stream is still at version and the store holds exactly total events (see
// requireStoreHolds, which adds a marker event).
func requireNothingWritten(t *testing.T, s events.Store, streamID string, version int64, total int) {
	t.Helper()
	got, err := s.StreamVersion(t.Context(), streamID)
	require.NoError(t, err)
	require.Equal(t, version, got, "a failed append changed the stream's version")
	evs, err := s.ReadStream(t.Context(), streamID, 1, 0)
	require.NoError(t, err)
	require.Len(t, evs, int(version), "a failed append left events in the stream")
	all := requireStoreHolds(t, s, total)
	for _, env := range all {
		if env.StreamID == streamID {
			require.LessOrEqual(t, env.Version, version, "a failed append left an event in the global order")
		}
	}
}

// requireStoreHolds checks that the global order holds exactly total
// events and returns them. To prove that a rejected event is not merely
// lagging behind, it first appends a marker to a stream of its own and waits
// for it: the order is gap-free, so whatever committed before the marker
// shows by then. The store holds total+1 events afterwards, and the marker
// is not among those returned.
func requireStoreHolds(t *testing.T, s events.Store, total int) []events.Envelope {
	t.Helper()
	marker := mustAppend(t, s, "eventstoretest-marker-"+newID(), events.NoStream, placed("marker", 0))
	all := awaitAll(t, s, total+1)
	require.Equal(t, marker.EventIDs[0], all[len(all)-1].ID, "the marker must be the newest event")
	return all[:total]
}

// requireWrongVersion checks a *WrongExpectedVersionError in full.
func requireWrongVersion(t *testing.T, err error, streamID string, expected events.ExpectedVersion, actual int64) {
	t.Helper()
	require.Error(t, err)
	require.ErrorIs(t, err, events.ErrWrongExpectedVersion)
	var wev *events.WrongExpectedVersionError
	require.True(t, errors.As(err, &wev), "want a *events.WrongExpectedVersionError, got %T: %v", err, err)
	require.Equal(t, streamID, wev.StreamID)
	require.Equal(t, expected, wev.Expected)
	require.Equal(t, actual, wev.Actual)
}

// ids returns the envelopes' event ids in order.
func ids(envs []events.Envelope) []string {
	out := make([]string, len(envs))
	for i, e := range envs {
		out[i] = e.ID
	}
	return out
}

// requireOrdered checks that tokens strictly increase along envs.
func requireOrdered(t *testing.T, envs []events.Envelope) {
	t.Helper()
	for i := 1; i < len(envs); i++ {
		require.True(t, envs[i-1].Token.Before(envs[i].Token),
			"token of event %d (%s) is not before that of event %d (%s)", i-1, envs[i-1].Token, i, envs[i].Token)
	}
}

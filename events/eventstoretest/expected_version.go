package eventstoretest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

func testExpectedVersionNoStream(t *testing.T, s events.Store) {
	res := mustAppend(t, s, "order-1", events.NoStream, placed("o", 1))
	require.Equal(t, int64(1), res.FirstVersion)

	_, err := s.Append(t.Context(), "order-1", events.NoStream, placed("o", 2))
	requireWrongVersion(t, err, "order-1", events.NoStream, 1)
	_, err = s.Append(t.Context(), "order-1", events.Exactly(0), placed("o", 2))
	requireWrongVersion(t, err, "order-1", events.NoStream, 1)
	requireNothingWritten(t, s, "order-1", 1, 1)
}

func testExpectedVersionStreamExists(t *testing.T, s events.Store) {
	_, err := s.Append(t.Context(), "order-1", events.StreamExists, placed("o", 1))
	requireWrongVersion(t, err, "order-1", events.StreamExists, 0)
	requireNothingWritten(t, s, "order-1", 0, 0)

	mustAppend(t, s, "order-1", events.AnyVersion, placed("o", 1))
	res := mustAppend(t, s, "order-1", events.StreamExists, placed("o", 2), placed("o", 3))
	require.Equal(t, int64(2), res.FirstVersion)
	require.Equal(t, int64(3), res.LastVersion)
}

func testExpectedVersionExactly(t *testing.T, s events.Store) {
	ctx := t.Context()
	mustAppend(t, s, "order-1", events.NoStream, placed("o", 1), placed("o", 2))
	res := mustAppend(t, s, "order-1", events.Exactly(2), placed("o", 3))
	require.Equal(t, int64(3), res.LastVersion)

	_, err := s.Append(ctx, "order-1", events.Exactly(2), placed("o", 4))
	requireWrongVersion(t, err, "order-1", events.Exactly(2), 3)
	_, err = s.Append(ctx, "order-1", events.Exactly(5), placed("o", 4))
	requireWrongVersion(t, err, "order-1", events.Exactly(5), 3)
	_, err = s.Append(ctx, "order-2", events.Exactly(1), placed("o", 4))
	requireWrongVersion(t, err, "order-2", events.Exactly(1), 0)
	require.Contains(t, err.Error(), "order-2", "the message names the stream")

	requireNothingWritten(t, s, "order-1", 3, 3)
	requireNothingWritten(t, s, "order-2", 0, 4) // the first check added a marker
}

func testExpectedVersionAny(t *testing.T, s events.Store) {
	for i := range 3 {
		res := mustAppend(t, s, "order-1", events.AnyVersion, placed("o", i))
		require.Equal(t, int64(i+1), res.FirstVersion)
		require.Equal(t, int64(i+1), res.LastVersion)
	}
}

func testExpectedVersionNegative(t *testing.T, s events.Store) {
	for _, ev := range []events.ExpectedVersion{-3, -7, -1 << 40} {
		_, err := s.Append(t.Context(), "order-1", ev, placed("o", 1))
		require.ErrorIs(t, err, events.ErrInvalidEvent, "expected version %d", int64(ev))
		require.NotErrorIs(t, err, events.ErrWrongExpectedVersion, "bad input is not a conflict")
	}
	requireNothingWritten(t, s, "order-1", 0, 0)
}

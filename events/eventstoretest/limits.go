package eventstoretest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

// RunLimits checks that a store keeps the events.Limits it was built with:
// an append is refused with ErrInvalidEvent, and nothing of it written,
// exactly when it holds more than MaxEventsPerAppend events or an event
// whose payload or metadata is over MaxPayloadBytes (metadata counted as
// Limits documents). newStore must return a fresh, empty store built with
// lim and a registry from Registry(), cleaned up with t.Cleanup. The limits
// and appends are random; the seed is logged.
func RunLimits(t *testing.T, newStore func(t *testing.T, lim events.Limits) events.Store) {
	t.Helper()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range 3 {
		lim := events.Limits{MaxPayloadBytes: 64 + rng.IntN(300), MaxEventsPerAppend: 1 + rng.IntN(6)}
		t.Run(fmt.Sprintf("%d/payload=%d,events=%d", i, lim.MaxPayloadBytes, lim.MaxEventsPerAppend), func(t *testing.T) {
			testLimits(t, rng.Uint64(), lim, newStore(t, lim))
		})
		t.Run(fmt.Sprintf("%d/read-back/payload=%d", i, lim.MaxPayloadBytes), func(t *testing.T) {
			testReadBackWithinLimit(t, rng.Uint64(), lim, newStore(t, lim))
		})
	}
}

func testLimits(t *testing.T, seed uint64, lim events.Limits, s events.Store) {
	rng := rand.New(rand.NewPCG(seed, seed))
	// near returns a size around the limit, where an off-by-one shows.
	near := func() int { return max(8, lim.MaxPayloadBytes-3+rng.IntN(6)) }
	// metadata returns metadata of the given documented size: the bytes
	// of both ids, plus each Extra key and value and 6.
	metadata := func(size int) events.Metadata {
		switch {
		case size >= 10 && rng.IntN(2) == 0:
			corr := rng.IntN(size - 8)
			return events.Metadata{CorrelationID: strings.Repeat("c", corr), Extra: map[string]string{"k": strings.Repeat("v", size-corr-7)}}
		case rng.IntN(2) == 0:
			return events.Metadata{CausationID: strings.Repeat("c", size)}
		}
		return events.Metadata{CorrelationID: strings.Repeat("c", size)}
	}
	stored, version := 0, int64(0)
	for range 40 {
		n := 1 + rng.IntN(lim.MaxEventsPerAppend+1)
		evs := make([]events.Event, n)
		payloads := make([]json.RawMessage, n)
		fits := n <= lim.MaxEventsPerAppend
		for i := range evs {
			payload, meta := 2+rng.IntN(8), 0
			switch rng.IntN(4) {
			case 0:
				payload = near()
			case 1:
				meta = near()
			}
			fits = fits && payload <= lim.MaxPayloadBytes && meta <= lim.MaxPayloadBytes
			payloads[i] = jsonString(payload)
			evs[i] = events.Event{Data: events.Raw{Type: "eventstoretest.blob", Payload: payloads[i]}, Metadata: metadata(meta)}
		}
		_, err := s.Append(t.Context(), "limits-1", events.Exactly(version), evs...)
		if !fits {
			require.ErrorIs(t, err, events.ErrInvalidEvent, "an append over %+v", lim)
			continue
		}
		require.NoError(t, err, "an append within %+v", lim)
		got, err := s.ReadStream(t.Context(), "limits-1", version+1, 0)
		require.NoError(t, err)
		require.Len(t, got, n)
		for i, env := range got {
			require.Equal(t, payloads[i], env.Payload, "a payload within the limit is stored whole")
			require.Equal(t, evs[i].Metadata, env.Metadata, "metadata within the limit is stored whole")
		}
		version += int64(n)
		stored += n
	}
	// Refused appends left nothing behind, not even in the global order (the
	// check appends a marker, which the smallest limit above leaves room for).
	requireNothingWritten(t, s, "limits-1", version, stored)
}

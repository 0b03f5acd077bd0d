package events_test

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

type boundsV struct{ N int }

// TestRegisterSafelyRefusesVersionsNoStoreHolds: a schema version outside
// 1 to MaxSchemaVersion is refused at registration, naming the range, not
// at every later append of the type; versions inside it register, over
// random versions on both sides of each bound.
func TestRegisterSafelyRefusesVersionsNoStoreHolds(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	draws := []int{0, 1, events.MaxSchemaVersion, events.MaxSchemaVersion + 1, -1, math.MaxInt, math.MinInt}
	for range 50 {
		draws = append(draws, rng.IntN(events.MaxSchemaVersion)+1, events.MaxSchemaVersion+1+rng.IntN(math.MaxInt-events.MaxSchemaVersion), -rng.IntN(math.MaxInt))
	}
	for i, v := range draws {
		reg := events.NewRegistry()
		name := fmt.Sprintf("bounds.%d", i)
		err := events.RegisterSafely[boundsV](reg, name, v)
		if v >= 1 && v <= events.MaxSchemaVersion {
			require.NoError(t, err, "version %d", v)
			raw, err := reg.Encode(boundsV{N: 1})
			require.NoError(t, err)
			require.Equal(t, v, raw.SchemaVersion)
			continue
		}
		require.Error(t, err, "version %d", v)
		require.ErrorContains(t, err, fmt.Sprintf("want 1 to %d", events.MaxSchemaVersion))
		require.NotPanics(t, func() { _, _ = reg.Encode(boundsV{N: 1}) }, "nothing was registered")
		_, err = reg.Encode(boundsV{N: 1})
		require.ErrorIs(t, err, events.ErrUnknownType, "a refused registration registers nothing")
	}
}

// TestAliasErrorNamesTheBadAlias: an alias that is no valid type name is
// refused with an error quoting it, not the valid target.
func TestAliasErrorNamesTheBadAlias(t *testing.T) {
	t.Parallel()
	reg := events.NewRegistry()
	events.Register[boundsV](reg, "new-name")
	for _, bad := range []string{"bad\nname", "", "x\x00y", "\xff"} {
		err := reg.Alias(bad, "new-name")
		require.Error(t, err, "%q", bad)
		require.ErrorContains(t, err, fmt.Sprintf("alias %q (for \"new-name\")", bad))
	}
}

// TestDecodeRefusesNegativeSchemaVersions: a stored negative schema
// version (only a row written around the store has one) is a
// *DecodeError, not read as version 1 through the upcasters; 0 still
// reads as 1.
func TestDecodeRefusesNegativeSchemaVersions(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	reg := events.NewRegistry()
	events.RegisterVersioned[boundsV](reg, "bounds.versioned", 2, events.Upcaster{From: 1, Func: func(p json.RawMessage) (json.RawMessage, error) { return p, nil }})
	for _, v := range []int{-1, math.MinInt, -rng.IntN(math.MaxInt) - 1, -1 - rng.IntN(5)} {
		_, err := reg.Decode(events.Envelope{Type: "bounds.versioned", SchemaVersion: v, Payload: json.RawMessage(`{"N":1}`)})
		var de *events.DecodeError
		require.ErrorAs(t, err, &de, "version %d", v)
		require.Equal(t, v, de.SchemaVersion)
		require.ErrorContains(t, err, "negative schema version")
	}
	got, err := reg.Decode(events.Envelope{Type: "bounds.versioned", SchemaVersion: 0, Payload: json.RawMessage(`{"N":1}`)})
	require.NoError(t, err)
	require.Equal(t, boundsV{N: 1}, got)
}

package eventstoretest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// passingHook wants orderPlaced events and leaves their metadata as
// given, so a reserved key the caller set would reach the store.
type passingHook struct{}

func (passingHook) Wants(types []string) bool { return recordingHook{}.Wants(types) }

func (passingHook) Before(_ context.Context, _ feed.Unit, _ string, evs []events.Event) ([]events.Event, error) {
	return evs, nil
}

func (passingHook) After(context.Context, feed.Unit, []events.Envelope) error { return nil }

// testReservedMetadataRefused: an append whose events set the applied-marks
// key is refused with ErrInvalidEvent on every path (the store, a unit,
// with and without an append hook), wherever the marked event sits among
// good ones and whatever the mark names, and nothing is written: a stored
// mark would make the consumers it names skip the event for good.
func testReservedMetadataRefused(t *testing.T, src feed.Source, s events.Store) {
	ctx := t.Context()
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, seed))
	hs, ok := src.(feed.HookedSource)
	require.True(t, ok, "%T does not implement feed.HookedSource", src)
	for round := range 24 {
		n := 1 + r.IntN(4)
		evs := make([]events.Event, n)
		for i := range evs {
			evs[i] = placed(fmt.Sprint(i), i+1)
		}
		bad := r.IntN(n)
		evs[bad].Metadata.Extra = map[string]string{"tenant": "t", events.AppliedMarksKey: []string{"", "orders", "a b", "x\u00e9"}[r.IntN(4)]}
		hooked := round%2 == 1
		var remove func()
		if hooked {
			remove = hs.AddAppendHook(passingHook{})
		}
		var err error
		if round%4 < 2 {
			_, err = s.Append(ctx, "marked-1", events.AnyVersion, evs...)
		} else {
			u := begin(t, src)
			if _, err = u.Append(ctx, "marked-1", events.AnyVersion, evs...); err == nil {
				err = u.Commit(ctx)
			} else {
				require.NoError(t, u.Commit(ctx), "seed %d round %d: a refused append leaves the unit usable", seed, round)
			}
		}
		if remove != nil {
			remove()
		}
		require.ErrorIs(t, err, events.ErrInvalidEvent, "seed %d round %d (hooked %v, event %d of %d)", seed, round, hooked, bad+1, n)
		require.ErrorContains(t, err, events.AppliedMarksKey, "seed %d round %d: the error names the key", seed, round)
	}
	requireNothingWritten(t, s, "marked-1", 0, 0)
}

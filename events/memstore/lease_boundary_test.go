package memstore_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events/feed"
)

// TestLeaseBoundaryIsTheSameEverywhere: a lease is live up to and
// including its expiry for Acquire, and DeleteCheckpoints judges it the
// same way: at the very instant it expires the lease still refuses
// another owner and its checkpoint is not deleted; a moment later both
// change. Random ttls.
func TestLeaseBoundaryIsTheSameEverywhere(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	s, b := setup(t)
	ctx := t.Context()
	cps := s.Checkpoints()
	deleter, ok := cps.(feed.CheckpointDeleter)
	require.True(t, ok)
	for i := range 20 {
		name := "c-" + string(rune('a'+i))
		ttl := time.Duration(1+rng.IntN(10_000)) * time.Millisecond
		_, err := cps.Acquire(ctx, name, "owner-a", ttl)
		require.NoError(t, err)
		b.clock.Advance(ttl) // exactly at the expiry
		_, err = cps.Acquire(ctx, name, "owner-b", time.Minute)
		require.ErrorIs(t, err, feed.ErrLeaseHeld, "live up to and including its expiry")
		n, err := deleter.DeleteCheckpoints(ctx, name)
		require.NoError(t, err)
		require.Zero(t, n, "a checkpoint whose lease is live at this instant is not deleted")
		b.clock.Advance(time.Nanosecond)
		n, err = deleter.DeleteCheckpoints(ctx, name)
		require.NoError(t, err)
		require.Equal(t, 1, n, "expired: deleted")
	}
}

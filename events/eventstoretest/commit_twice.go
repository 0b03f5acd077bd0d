package eventstoretest

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// testCommitRefusesACheckpointMovedTwice: a commit that moves one
// checkpoint twice is refused with ErrInvalidLease, writing nothing, on
// both stores. Memory judged each move's From against the checkpoint as
// it was before the commit and committed; PostgreSQL judged the second
// against the first's result and failed with ErrLeaseLost, as if the
// lease were gone.
func testCommitRefusesACheckpointMovedTwice(t *testing.T, src feed.Source, st events.Store) {
	ctx := t.Context()
	cps := src.Checkpoints()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	l, err := cps.Acquire(ctx, "twice", "owner", longTTL)
	require.NoError(t, err)
	from := l.Position
	other, err := cps.Acquire(ctx, "other", "owner", longTTL)
	require.NoError(t, err)

	u := begin(t, src)
	res, err := u.Append(ctx, "order-1", events.NoStream, placed("1", 10))
	require.NoError(t, err)
	moves := []feed.Move{
		{Lease: l, Position: res.Token, From: &from},
		{Lease: other, Position: res.Token},
		{Lease: l, Position: res.Token},
	}
	rng.Shuffle(len(moves), func(i, j int) { moves[i], moves[j] = moves[j], moves[i] })
	err = u.Commit(ctx, moves...)
	require.ErrorIs(t, err, feed.ErrInvalidLease)
	require.NotErrorIs(t, err, feed.ErrLeaseLost)
	require.ErrorContains(t, err, `"twice" is moved twice`)

	v, err := st.StreamVersion(ctx, "order-1")
	require.NoError(t, err)
	require.Zero(t, v, "the refused commit appended nothing")
	for _, name := range []string{"twice", "other"} {
		pos, err := cps.Position(ctx, name)
		require.NoError(t, err)
		require.True(t, pos.IsZero(), "the refused commit moved %s", name)
	}
}

package eventstoretest

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// testCommitFromMovedCheckpointWritesNothing: a move with From commits
// only while the stored checkpoint is still at From. A unit over events an
// earlier commit already applied (its reply lost) finds the checkpoint
// moved, fails with ErrLeaseLost and writes nothing; taking the lease
// again gives the stored position, and a unit from there commits. Random
// positions, with and without writes (one statement, or a batch with
// the writes), and with a second move beside it.
func testCommitFromMovedCheckpointWritesNothing(t *testing.T, src feed.Source, s events.Store) {
	ctx := t.Context()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	cps := src.Checkpoints()
	lease, err := cps.Acquire(ctx, "from", "o", longTTL)
	require.NoError(t, err)
	other, err := cps.Acquire(ctx, "beside", "o", longTTL)
	require.NoError(t, err)
	stored := events.Token{}
	for i := range 30 {
		next := events.MakeToken(stored.Major()+1+uint64(r.IntN(5)), uint64(r.IntN(3)))
		from := stored
		stale := r.IntN(2) == 0
		if stale {
			// Anywhere but the stored position: behind it (an earlier
			// position the consumer still believes in) or ahead.
			for from == stored {
				from = events.MakeToken(uint64(r.IntN(int(stored.Major())+3)), uint64(r.IntN(3)))
			}
		}
		withWrites := r.IntN(2) == 0
		beside := r.IntN(3) == 0
		u := begin(t, src)
		stream := fmt.Sprintf("from-%d", i)
		if withWrites {
			_, err = u.Append(ctx, stream, events.NoStream, placed(stream, i))
			require.NoError(t, err)
			require.NoError(t, u.Rows().Put(ctx, "ns", "from", stream, []byte(`1`), next))
		}
		moves := []feed.Move{{Lease: lease, Position: next, From: &from}}
		if beside {
			moves = append(moves, feed.Move{Lease: other, Position: next})
		}
		err = u.Commit(ctx, moves...)
		if !stale {
			require.NoError(t, err, "seed %d: a move from the stored position %s", seed, stored)
			stored = next
			requirePosition(t, cps, "from", stored)
			if beside {
				requirePosition(t, cps, "beside", next)
			}
			continue
		}
		require.ErrorIs(t, err, feed.ErrLeaseLost, "seed %d: a move from %s while the checkpoint is at %s", seed, from, stored)
		requirePosition(t, cps, "from", stored)
		v, err := s.StreamVersion(ctx, stream)
		require.NoError(t, err)
		require.Zero(t, v, "seed %d: the unit's append was rolled back with the refused move", seed)
		_, ok, err := src.Rows().Get(ctx, "ns", "from", stream, feed.LockNone)
		require.NoError(t, err)
		require.False(t, ok, "seed %d: the unit's row was rolled back with the refused move", seed)
		// The consumer takes its lease again and learns where it is.
		lease, err = cps.Acquire(ctx, "from", "o", longTTL)
		require.NoError(t, err)
		require.Equal(t, stored, lease.Position, "seed %d: the lease taken again starts at the stored checkpoint", seed)
	}
}

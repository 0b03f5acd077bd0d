package memstore_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

// TestTokensAreSeqsAndRolledBackUnitsLeaveThemUnused guards the package
// doc's "Global tokens are MakeToken(seq, seq) for a 1-based sequence; a
// rolled-back unit leaves its seqs unused." Random mixes of plain appends
// and units that commit or roll back: each event's token is
// MakeToken(seq, seq) where seq counts every event reserved so far
// (rolled-back ones included), a rolled-back unit's seqs never appear in
// the feed, and stream versions stay gap-free.
func TestTokensAreSeqsAndRolledBackUnitsLeaveThemUnused(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	s, _ := setup(t)
	ctx := t.Context()
	raw := func() events.Event {
		return events.Event{Data: events.Raw{Type: "t", Payload: json.RawMessage(`{}`)}}
	}
	var (
		next     uint64         = 1
		want     []events.Token // committed, in feed order
		versions = map[string]int64{}
	)
	for op := range 60 {
		stream := fmt.Sprint("s-", rng.IntN(4))
		n := 1 + rng.IntN(3)
		evs := make([]events.Event, n)
		for i := range evs {
			evs[i] = raw()
		}
		switch rng.IntN(3) {
		case 0: // plain append
			res, err := s.Append(ctx, stream, events.Exactly(versions[stream]), evs...)
			require.NoError(t, err, "op %d", op)
			require.Equal(t, events.MakeToken(next+uint64(n)-1, next+uint64(n)-1), res.Token, "op %d", op)
			for i := range n {
				want = append(want, events.MakeToken(next+uint64(i), next+uint64(i)))
			}
			versions[stream] += int64(n)
			require.Equal(t, versions[stream], res.LastVersion)
		default: // a unit that commits or rolls back
			u, err := s.Checkpoints().Begin(ctx)
			require.NoError(t, err)
			res, err := u.Append(ctx, stream, events.Exactly(versions[stream]), evs...)
			require.NoError(t, err, "op %d", op)
			require.Equal(t, events.MakeToken(next+uint64(n)-1, next+uint64(n)-1), res.Token, "op %d: a unit reserves its tokens at once", op)
			if rng.IntN(2) == 0 {
				require.NoError(t, u.Commit(ctx))
				for i := range n {
					want = append(want, events.MakeToken(next+uint64(i), next+uint64(i)))
				}
				versions[stream] += int64(n)
			} else {
				require.NoError(t, u.Rollback(ctx))
			}
		}
		next += uint64(n)
	}
	all, err := s.ReadAll(ctx, events.Token{}, 10_000)
	require.NoError(t, err)
	got := make([]events.Token, len(all))
	for i, e := range all {
		got[i] = e.Token
	}
	require.Equal(t, want, got, "the feed holds exactly the committed seqs, rolled-back ones unused")
	for stream, v := range versions {
		got, err := s.StreamVersion(ctx, stream)
		require.NoError(t, err)
		require.Equal(t, v, got, stream)
	}
}

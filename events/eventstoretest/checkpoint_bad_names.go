package eventstoretest

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// badLeaseText returns a random consumer name, owner, group or member that
// Acquire and Heartbeat refuse: most hold NUL or invalid UTF-8, which
// PostgreSQL's text cannot hold, some another control character, and a
// few are empty or longer than feed.MaxLeaseTextBytes.
func badLeaseText(rng *rand.Rand) string {
	switch rng.IntN(10) {
	case 0:
		return ""
	case 1:
		return leaseText(rng, feed.MaxLeaseTextBytes+1+rng.IntN(100))
	}
	bad := []string{"\x00", "\x00", "\xff", "\xc3", "\x80", "\xed\xa0\x80", "\n", "\x7f"}[rng.IntN(8)]
	s := leaseText(rng, rng.IntN(40))
	i := rng.IntN(len(s) + 1) // inside a character too: still invalid
	return s[:i] + bad + s[i:]
}

// testCheckpointCallsRefuseBadNames: every checkpoint call that takes a
// consumer name, a lease or a membership refuses a name or owner Acquire
// refuses (random ones, see badLeaseText) with feed.ErrInvalidLease, before
// touching storage and also with a done context: Position, Release,
// Advance, Leave, DeleteCheckpoints, Unit.Positions, and Unit.Commit for a
// move's lease (the commit then moves nothing and ends the unit). Without
// the check, PostgreSQL failed on NUL and invalid UTF-8 with an
// unclassified driver error where memory answered.
func testCheckpointCallsRefuseBadNames(t *testing.T, src feed.Source, _ events.Store) {
	ctx := t.Context()
	cps := src.Checkpoints()
	deleter, ok := cps.(feed.CheckpointDeleter)
	require.True(t, ok, "%T is no feed.CheckpointDeleter", cps)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	held, err := cps.Acquire(ctx, "held", "owner", longTTL)
	require.NoError(t, err)
	start := events.MakeToken(1, 1)
	require.NoError(t, commit(t, cps, held, start))
	withName := func(name string) feed.Lease { l := held; l.Name = name; return l }
	withOwner := func(owner string) feed.Lease { l := held; l.Owner = owner; return l }
	commitMoves := func(ctx context.Context, bad feed.Lease) error {
		u := begin(t, src)
		err := u.Commit(ctx,
			feed.Move{Lease: held, Position: events.MakeToken(5, 5)},
			feed.Move{Lease: bad, Position: events.MakeToken(6, 6)})
		_, after := u.Positions(t.Context(), "held")
		require.ErrorIs(t, after, events.ErrUnitEnded, "a refused commit ends the unit")
		return err
	}
	calls := []struct {
		what string
		call func(ctx context.Context, bad string) error
	}{
		{"Position", func(ctx context.Context, bad string) error { _, err := cps.Position(ctx, bad); return err }},
		{"Release, name", func(ctx context.Context, bad string) error { return cps.Release(ctx, withName(bad)) }},
		{"Release, owner", func(ctx context.Context, bad string) error { return cps.Release(ctx, withOwner(bad)) }},
		{"Advance, name", func(ctx context.Context, bad string) error {
			return cps.Advance(ctx, withName(bad), events.MakeToken(7, 7))
		}},
		{"Advance, owner", func(ctx context.Context, bad string) error {
			return cps.Advance(ctx, withOwner(bad), events.MakeToken(7, 7))
		}},
		{"Leave, group", func(ctx context.Context, bad string) error { return cps.Leave(ctx, bad, "member") }},
		{"Leave, member", func(ctx context.Context, bad string) error { return cps.Leave(ctx, "group", bad) }},
		{"DeleteCheckpoints", func(ctx context.Context, bad string) error {
			_, err := deleter.DeleteCheckpoints(ctx, "other", bad)
			return err
		}},
		{"Unit.Positions", func(ctx context.Context, bad string) error {
			_, err := begin(t, src).Positions(ctx, "held", bad)
			return err
		}},
		{"Unit.Commit, name", func(ctx context.Context, bad string) error { return commitMoves(ctx, withName(bad)) }},
		{"Unit.Commit, owner", func(ctx context.Context, bad string) error { return commitMoves(ctx, withOwner(bad)) }},
	}
	for range 8 {
		bad := badLeaseText(rng)
		for _, c := range calls {
			require.ErrorIs(t, c.call(ctx, bad), feed.ErrInvalidLease, "%s with %.80q", c.what, bad)
			require.ErrorIs(t, c.call(canceledContext(t), bad), feed.ErrInvalidLease, "%s with %.80q (done context)", c.what, bad)
		}
	}
	requirePosition(t, cps, "held", start)
	require.NoError(t, cps.Renew(ctx, held, longTTL), "the lease is still held")
}

package eventstoretest

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// leaseText returns valid lease text of exactly n bytes, mixing one- to
// four-byte characters.
func leaseText(rng *rand.Rand, n int) string {
	runes := []string{"a", "Z", "7", "-", "é", "€", "漢", "🙂"}
	var b strings.Builder
	for b.Len() < n {
		r := runes[rng.IntN(len(runes))]
		if b.Len()+len(r) > n {
			r = "x"
		}
		b.WriteString(r)
	}
	return b.String()
}

// testLeaseTextLength: both stores take a consumer name, owner, group and
// member of up to feed.MaxLeaseTextBytes bytes (a group and a member both
// that long together, one key on PostgreSQL), and refuse a longer one with
// feed.ErrInvalidLease and an error that quotes only its start, over
// random lengths around the bound.
func testLeaseTextLength(t *testing.T, src feed.Source, _ events.Store) {
	ctx := t.Context()
	cps := src.Checkpoints()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	lengths := []int{feed.MaxLeaseTextBytes, feed.MaxLeaseTextBytes + 1, 50 * feed.MaxLeaseTextBytes}
	for range 6 {
		lengths = append(lengths, feed.MaxLeaseTextBytes-rng.IntN(64), feed.MaxLeaseTextBytes+1+rng.IntN(4096))
	}
	for _, n := range lengths {
		name, other := leaseText(rng, n), leaseText(rng, n)
		l, err := cps.Acquire(ctx, name, other, time.Minute)
		_, herr := cps.Heartbeat(ctx, name, other, time.Minute)
		if n > feed.MaxLeaseTextBytes {
			for _, err := range []error{err, herr} {
				require.ErrorIs(t, err, feed.ErrInvalidLease, "%d bytes", n)
				require.Less(t, len(err.Error()), 600, "the error quotes the whole %d-byte text", n)
			}
			continue
		}
		require.NoError(t, err, "Acquire with a %d-byte name and owner", n)
		require.NoError(t, herr, "Heartbeat with a %d-byte group and member", n)
		require.NoError(t, cps.Renew(ctx, l, time.Minute))
		require.NoError(t, cps.Release(ctx, l))
		require.NoError(t, cps.Leave(ctx, name, other))
	}
}

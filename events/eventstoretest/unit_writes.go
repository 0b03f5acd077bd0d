package eventstoretest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// testUnitCountsWrites: a unit is a feed.WriteCounter whose count moves
// with every append, row put, row delete and namespace delete made
// through it, and with no read, over a random sequence of both.
func testUnitCountsWrites(t *testing.T, src feed.Source, _ events.Store) {
	ctx := t.Context()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	u := begin(t, src)
	wc, ok := u.(feed.WriteCounter)
	require.True(t, ok, "the unit %T is not a feed.WriteCounter", u)
	want := uint64(0)
	require.Equal(t, want, wc.Writes())
	for i := range 10 + rng.IntN(20) {
		key := fmt.Sprint("k", rng.IntN(4))
		var err error
		switch op := rng.IntN(7); op {
		case 0:
			_, err = u.Append(ctx, fmt.Sprint("order-", rng.IntN(3)), events.AnyVersion, placed("1", i))
			want++
		case 1:
			err = u.Rows().Put(ctx, "ns", "t", key, json.RawMessage(fmt.Sprint(i)), events.MakeToken(1, uint64(i+1)))
			want++
		case 2:
			err = u.Rows().Delete(ctx, "ns", "t", key)
			want++
		case 3:
			_, err = u.Rows().DeleteNamespace(ctx, "ns", 1+rng.IntN(3))
			want++
		case 4:
			_, _, err = u.Rows().Get(ctx, "ns", "t", key, feed.Lock(rng.IntN(3)))
		case 5:
			_, err = u.Rows().List(ctx, "ns", "t", feed.RowQuery{Limit: 10})
		default:
			_, err = u.ReadStream(ctx, "order-0", 1, 0)
		}
		require.NoError(t, err, "operation %d", i)
		require.Equal(t, want, wc.Writes(), "operation %d", i)
	}
}

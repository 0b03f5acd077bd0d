package projections

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
)

// TestRebuildKnowledgeFollowsTheLease checks what a rebuild may take for
// granted across units, over random sequences of units, commits,
// rollbacks and lease changes, against a model of the rows committed so
// far: a row it says it knows has the committed value; it claims a row does
// not exist only under a lease whose delivery began at the feed's start
// and skips nothing carried over from an earlier partition count (whose
// partitions committed rows), and forgets everything when the lease
// generation changes (another owner may have committed in between).
func TestRebuildKnowledgeFollowsTheLease(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	st, err := memstore.New(nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, st.Close()) }()
	ctx := context.Background()

	a := &applier{rebuild: 2, proj: &compiled{partitions: 1}}
	committed := map[rowKey]int{} // the model: rows committed by any owner
	lease := feed.Lease{Generation: 1}
	carried := false // the delivery skips what an earlier partition count handled
	keys := []rowKey{{"t", "a"}, {"t", "b"}, {"t", "c"}, {"u", "a"}}
	for step := range 300 {
		switch r.IntN(6) {
		case 0: // another owner takes over, commits, and we come back later
			for _, k := range keys {
				if r.IntN(2) == 0 {
					committed[k] = r.IntN(100)
				}
			}
			lease = feed.Lease{Generation: lease.Generation + 2, Position: events.MakeToken(uint64(step+1), 1)}
			continue
		case 1: // we take a fresh lease from the start: nothing is committed
			// yet, or the partitions of an earlier count committed what the
			// delivery skips
			lease = feed.Lease{Generation: lease.Generation + 1}
			carried = carried || len(committed) > 0
			continue
		}
		u, err := st.Checkpoints().Begin(ctx)
		require.NoError(t, err)
		overlay := a.cacheOf(0, u)
		k := a.known(lease, true, carried, 0, u, overlay)
		require.NotNil(t, k)
		for _, key := range keys {
			c, ok := k.lookup(key)
			if !ok {
				continue
			}
			v, exists := committed[key]
			require.Equal(t, exists, c.found, "seed %d step %d: %v known as found=%v", seed, step, key, c.found)
			if exists {
				require.Equal(t, events.MakeToken(uint64(v)+1, 1), c.row.Token, "seed %d step %d: %v", seed, step, key)
			}
		}
		// The unit writes some rows.
		writes := map[rowKey]int{}
		for _, key := range keys {
			if r.IntN(3) == 0 {
				v := r.IntN(100)
				writes[key] = v
				overlay[key] = cachedRow{row: feed.Row{Key: key.key, Value: []byte("1"), Token: events.MakeToken(uint64(v)+1, 1)}, found: true}
			}
		}
		if r.IntN(4) == 0 {
			require.NoError(t, u.Rollback(ctx))
			continue
		}
		require.NoError(t, u.Commit(ctx))
		for key, v := range writes {
			committed[key] = v
		}
	}
}

// A partitioned projection's rebuild knows nothing across units: two
// partitions may write the same row.
func TestRebuildKnowledgeNotForPartitions(t *testing.T) {
	t.Parallel()
	st, err := memstore.New(nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, st.Close()) }()
	u, err := st.Checkpoints().Begin(context.Background())
	require.NoError(t, err)
	defer func() { require.NoError(t, u.Rollback(context.Background())) }()
	a := &applier{rebuild: 2, proj: &compiled{partitions: 2}}
	require.Nil(t, a.known(feed.Lease{Generation: 1}, true, false, 0, u, map[rowKey]cachedRow{}))
	a = &applier{rebuild: 0, proj: &compiled{partitions: 1}}
	require.Nil(t, a.known(feed.Lease{Generation: 1}, true, false, 0, u, map[rowKey]cachedRow{}), "the live processor is not the only writer")
}

package lag_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestEveryConsumerLeavesOutRebuilds: a Monitor watching every consumer
// does not report a projection rebuild's consumer ("orders@rebuild-3",
// split or not), which reads the feed from its start while readers use
// the caught-up live projection; it would breach for as long as the
// rebuild runs. Consumers whose names only look alike are still
// reported.
func TestEveryConsumerLeavesOutRebuilds(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, seed))
	b := setup(t, nil)
	head := b.store.append(5 + r.IntN(20))
	b.clock.Advance(time.Minute) // every event is older than the default SLA
	b.store.commit("orders", head)
	gen := 1 + r.IntN(1000)
	b.store.commit(fmt.Sprintf("orders@rebuild-%d", gen), token(1))
	b.store.commit(fmt.Sprintf("orders@rebuild-%d#0/2", gen+1), token(1))
	b.store.commit(fmt.Sprintf("orders@rebuild-%d#1/2", gen+1), token(1))
	// Not rebuilds: reported as they are.
	b.store.commit("mail@rebuild-x", head)
	b.store.commit("mail@rebuild-", head)

	reports, err := b.mon.Check(t.Context())
	require.NoError(t, err)
	var names []string
	for _, rep := range reports {
		names = append(names, rep.Name)
		require.False(t, rep.Breached, "seed %d: %s breached (%s)", seed, rep.Name, rep.Reason)
	}
	require.Equal(t, []string{"mail@rebuild-", "mail@rebuild-x", "orders"}, names, "seed %d", seed)
}

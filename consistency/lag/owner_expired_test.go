package lag_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestOwnerIsEmptyOnceTheLeaseRanOut: a report names the lease holder
// while its lease runs, and nobody once it has run out (the stores keep
// the last holder's name).
func TestOwnerIsEmptyOnceTheLeaseRanOut(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	head := b.store.append(2)
	b.store.commit("orders", head)
	b.store.mu.Lock()
	c := b.store.consumers["orders"]
	c.LeaseUntil = b.clock.Now().Add(5 * time.Second)
	b.store.consumers["orders"] = c
	b.store.mu.Unlock()

	require.Equal(t, "runner-1", b.check(t, "orders").Owner, "the lease runs")
	b.clock.Advance(4 * time.Second)
	require.Equal(t, "runner-1", b.check(t, "orders").Owner, "the lease still runs")
	b.clock.Advance(time.Second)
	require.Empty(t, b.check(t, "orders").Owner, "the lease ran out")
}

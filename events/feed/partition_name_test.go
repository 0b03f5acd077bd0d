package feed_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events/feed"
)

// TestParsePartitionNameInvertsPartitionName: over random processor names
// (holding "#", "/" and digits, so a name can look like a partition's
// itself), counts and indexes, ParsePartitionName gives back what
// PartitionName was given; names no processor split can produce are not
// partition names.
func TestParsePartitionNameInvertsPartitionName(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	pieces := []string{"a", "Z", "#", "/", "0", "7", "12", "-", "é", "#1/2"}
	for range 2000 {
		var b strings.Builder
		for b.Len() == 0 || rng.IntN(4) != 0 {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		name := b.String()
		count := 2 + rng.IntN(feed.MaxPartitions-1)
		index := rng.IntN(count)
		p, i, n, ok := feed.ParsePartitionName(feed.PartitionName(name, index, count))
		require.True(t, ok, "%q %d/%d", name, index, count)
		require.Equal(t, name, p)
		require.Equal(t, index, i)
		require.Equal(t, count, n)
	}
	for _, s := range []string{
		"orders", "orders#", "#1/2", "orders#1", "orders#1/", "orders#/2", "orders#1/1", "orders#2/2",
		"orders#-1/2", "orders#01/2", "orders#1/02", "orders#+1/2", "orders#0/1025", "orders#a/2", "orders#1/2x", "orders#1/2/3",
	} {
		_, _, _, ok := feed.ParsePartitionName(s)
		require.False(t, ok, s)
	}
}

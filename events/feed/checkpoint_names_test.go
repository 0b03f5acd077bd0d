package feed_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
)

// TestCheckpointNamesNameOneSubscription checks that no two subscriptions
// share a checkpoint (and with it a lease and a position): over random
// consumer names, partitions and topics built from the separators, every
// accepted subscriber's CheckpointName, and every accepted processor's
// partition names, are distinct unless they name the same subscription.
// Names holding '/' or '#' are refused, but for a partitioned
// subscriber's own PartitionName.
func TestCheckpointNamesNameOneSubscription(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	src, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = src.Close() })
	word := func() string {
		var b strings.Builder
		for range 1 + rng.IntN(4) {
			b.WriteString([]string{"a", "b", "/", "#", "0", "1", "2", "-"}[rng.IntN(8)])
		}
		return b.String()
	}
	owner := map[string]string{}
	claim := func(cp, who string) {
		if prev, ok := owner[cp]; ok && prev != who {
			t.Fatalf("checkpoint %q names two subscriptions: %s and %s", cp, prev, who)
		}
		owner[cp] = who
	}
	var accepted, refused int
	for range 4000 {
		base := word()
		part := feed.Partition{}
		name := base
		if rng.IntN(3) == 0 {
			n := 2 + rng.IntN(3)
			part = feed.Partition{Index: rng.IntN(n), Count: n, Key: feed.ByStream}
			if rng.IntN(4) > 0 {
				name = feed.PartitionName(base, part.Index, part.Count)
			}
		}
		if rng.IntN(4) == 0 {
			// A processor: its partitions' checkpoints.
			n := 1 + rng.IntN(3)
			_, err := feed.NewProcessor(src, &feed.ProcessorConfig{Name: base, Partitions: n}, func(context.Context, events.Envelope) error { return nil })
			if err != nil {
				require.True(t, strings.ContainsAny(base, "/#"), "processor %q refused: %v", base, err)
				refused++
				continue
			}
			require.False(t, strings.ContainsAny(base, "/#"), "processor %q accepted", base)
			accepted++
			for i := range n {
				who := fmt.Sprintf("consumer %q of the whole feed", base)
				if n > 1 {
					who = fmt.Sprintf("consumer %q partition %d/%d of the whole feed", base, i, n)
				}
				claim(feed.PartitionName(base, i, n), who)
			}
			continue
		}
		sub, err := feed.NewSubscriber(src, &feed.SubscriberConfig{ConsumerName: name, Partition: part})
		if err != nil {
			require.ErrorContains(t, err, "'/' or '#'", "subscriber %q refused for another reason", name)
			refused++
			continue
		}
		require.NoError(t, sub.Close())
		accepted++
		topic := feed.TopicAll
		if rng.IntN(3) > 0 {
			topic = word()
		}
		who := fmt.Sprintf("consumer %q of topic %q", name, topic)
		if name != base {
			who = fmt.Sprintf("consumer %q partition %d/%d of topic %q", base, part.Index, part.Count, topic)
		}
		if topic == feed.TopicAll {
			who = strings.Replace(who, fmt.Sprintf("of topic %q", topic), "of the whole feed", 1)
		}
		claim(feed.CheckpointName(name, topic), who)
	}
	require.Positive(t, accepted)
	require.Positive(t, refused)
}

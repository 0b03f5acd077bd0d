package feed_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// TestProcessorNameLongerThanItsDeadLettersAllowIsRefused: a dead letter
// is keyed by its partition's name, "/" and the event's id (36 bytes), and
// a row key holds MaxRowKeyLength bytes. A name that would make every key
// too long is refused by NewProcessor (random partition counts, lengths
// around the bound); the longest accepted name dead-letters a failing event
// instead of retrying it for ever with nothing recorded.
func TestProcessorNameLongerThanItsDeadLettersAllowIsRefused(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 31))
	noop := func(context.Context, events.Envelope) error { return nil }
	_, src := newMemstore(t)
	longest := func(partitions int) int {
		suffix := len(feed.PartitionName("", partitions-1, partitions))
		return feed.MaxRowKeyLength - len("/") - 36 - suffix
	}
	for range 50 {
		partitions := 1 + rng.IntN(feed.MaxPartitions)
		n := longest(partitions) - 3 + rng.IntN(7)
		p, err := feed.NewProcessor(src, &feed.ProcessorConfig{Name: strings.Repeat("n", n), Partitions: partitions}, noop)
		if n > longest(partitions) {
			require.ErrorContains(t, err, "use a shorter name", "name of %d bytes, %d partitions", n, partitions)
			require.Nil(t, p)
			continue
		}
		require.NoError(t, err, "name of %d bytes, %d partitions", n, partitions)
		require.NoError(t, p.Close())
	}

	ctx := context.Background()
	store, src := newMemstore(t)
	res, err := store.Append(ctx, "s-1", events.AnyVersion, events.Event{Data: events.Raw{Type: "t", Payload: []byte(`{}`)}})
	require.NoError(t, err)
	letters := make(chan feed.DeadLetterRecord, 1)
	p, err := feed.NewProcessor(src, &feed.ProcessorConfig{
		Name: strings.Repeat("n", longest(1)), MaxAttempts: 1, OnFailure: feed.DeadLetter, Subscriber: fastRetries(),
		OnDeadLetter: func(r feed.DeadLetterRecord) { letters <- r },
	}, func(context.Context, events.Envelope) error { return errors.New("always fails") })
	require.NoError(t, err)
	runProcessor(t, p)
	select {
	case r := <-letters:
		require.Equal(t, res.EventIDs[0], r.Event.ID)
	case <-time.After(20 * time.Second):
		t.Fatalf("the event was never dead-lettered: %+v", p.Status().Partitions[0])
	}
}

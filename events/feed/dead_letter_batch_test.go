package feed_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// TestDeadLettersInOneBatch: events that always fail, some of them next
// to each other in one commit batch, are each dead-lettered after
// MaxAttempts failures and the partition goes on to the end. A dead letter
// whose unit rolled back because a later event of the unit failed must not
// start its attempts again: then two failing events in one batch would
// take turns forever.
func TestDeadLettersInOneBatch(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	store, src := newMemstore(t)
	ctx := context.Background()
	n := 4 + rng.IntN(12)
	failing := map[string]bool{}
	var bad []string
	for i := range n {
		res, err := store.Append(ctx, fmt.Sprint("s-", i), events.AnyVersion, events.Event{Data: events.Raw{Type: "t", Payload: []byte(`{}`)}})
		require.NoError(t, err)
		// The first two fail, so one batch always holds two in a row.
		if i < 2 || rng.IntN(2) == 0 {
			failing[res.EventIDs[0]] = true
			bad = append(bad, res.EventIDs[0])
		}
	}
	attempts := 1 + rng.IntN(3)
	var mu sync.Mutex
	calls := map[string]int{}
	letters := make(chan feed.DeadLetterRecord, n)
	p, err := feed.NewProcessor(src, &feed.ProcessorConfig{
		Name: "dead", MaxAttempts: attempts, OnFailure: feed.DeadLetter,
		Subscriber:   feed.SubscriberConfig{NackBackoffMin: time.Millisecond, NackBackoffMax: 2 * time.Millisecond},
		OnDeadLetter: func(r feed.DeadLetterRecord) { letters <- r },
	}, func(_ context.Context, env events.Envelope) error {
		mu.Lock()
		calls[env.ID]++
		mu.Unlock()
		if failing[env.ID] {
			return errors.New("always fails")
		}
		return nil
	})
	require.NoError(t, err)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	var got []string
	for range bad {
		select {
		case r := <-letters:
			require.Equal(t, attempts, r.Attempts)
			got = append(got, r.Event.ID)
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of %d failing events dead-lettered (MaxAttempts %d)", len(got), len(bad), attempts)
		}
	}
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	require.NoError(t, p.Close())
	require.Equal(t, bad, got, "every failing event is dead-lettered once, in order")
	mu.Lock()
	defer mu.Unlock()
	for _, id := range bad {
		require.GreaterOrEqual(t, calls[id], attempts, "event %s", id)
	}
}

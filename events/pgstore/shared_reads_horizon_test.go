package pgstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
)

// TestPartitionsPassAHorizonNoWakeAnnounces: a partitioned processor's
// events are held back by a transaction that is not converge's, so its
// end wakes nobody. Every partition was told its events are pending, and
// the partitions share their reads; each must still read the store again
// (not the shared answer it already had) and receive its events once the
// transaction ends.
func TestPartitionsPassAHorizonNoWakeAnnounces(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil, 12)
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 3))
	partitions := 2 + r.IntN(7)
	n := 20 + r.IntN(40)

	foreign, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = foreign.Rollback(ctx) }()
	var xid int64
	require.NoError(t, foreign.QueryRow(ctx, "SELECT txid_current()").Scan(&xid)) // holds the horizon

	want := map[string]bool{}
	for i := range n {
		res, err := b.store.Append(ctx, fmt.Sprintf("order-%d", r.IntN(15)), events.AnyVersion,
			events.Event{Data: events.Raw{Type: "placed", Payload: json.RawMessage(`{}`)}})
		require.NoError(t, err, "append %d", i)
		want[res.EventIDs[0]] = true
	}

	var (
		mu   sync.Mutex
		got  = map[string]int{}
		done = make(chan struct{})
	)
	src := &pendingSignal{Store: b.store, pending: make(chan struct{})}
	p, err := feed.NewProcessor(src, &feed.ProcessorConfig{
		Name: "horizon", Partitions: partitions,
		// No safety poll within the test: only a read of the store can
		// find the events.
		Subscriber: feed.SubscriberConfig{SafetyPollInterval: time.Hour},
	}, func(_ context.Context, env events.Envelope) error {
		mu.Lock()
		defer mu.Unlock()
		got[env.ID]++
		if len(got) == n {
			close(done)
		}
		return nil
	})
	require.NoError(t, err)
	rctx, cancel := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- p.Run(rctx) }()
	defer func() {
		cancel()
		require.ErrorIs(t, <-ran, context.Canceled)
		require.NoError(t, p.Close()) // its membership outlives Run
	}()

	// Wait until a read was told the events are pending.
	select {
	case <-src.pending:
	case <-time.After(10 * time.Second):
		t.Fatalf("seed %d: no read reported the held-back events as pending", seed)
	}
	mu.Lock()
	require.Empty(t, got, "seed %d: nothing is readable behind the horizon", seed)
	mu.Unlock()

	require.NoError(t, foreign.Rollback(ctx)) // ends without a wake-up
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("seed %d: %d partitions delivered %d of %d events after the horizon passed", seed, partitions, len(got), n)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, times := range got {
		require.True(t, want[id], "seed %d: unexpected event %s", seed, id)
		require.Equal(t, 1, times, "seed %d: event %s delivered %d times", seed, id, times)
	}
}

// pendingSignal closes pending the first time a read reports events
// pending.
type pendingSignal struct {
	*pgstore.Store
	once    sync.Once
	pending chan struct{}
}

func (s *pendingSignal) ReadFeed(ctx context.Context, after events.Token, f feed.Filter, limit int) (feed.Batch, error) {
	b, err := s.Store.ReadFeed(ctx, after, f, limit)
	if err == nil && b.Pending {
		s.once.Do(func() { close(s.pending) })
	}
	return b, err
}

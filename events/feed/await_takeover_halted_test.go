package feed_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
)

// TestAwaitTakeoverCountsAHaltedPartition: a partition halted on a poison
// event (a typical reason to roll out a new build) is held, under its
// lease, by the newer build's process once the older one stands by. The
// older process cannot deliver it, so the takeover is complete, yet
// AwaitTakeover waits for its whole ctx (Client.Start: two lease TTLs, then
// a false warning).
func TestAwaitTakeoverCountsAHaltedPartition(t *testing.T) {
	t.Parallel()
	st, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	start := func(who string, types []string) *feed.Processor {
		p, err := feed.NewProcessor(st, &feed.ProcessorConfig{
			Name: "await-halt", Types: types, Partitions: 1, MaxAttempts: 1,
			HaltCheckInterval: 20 * time.Millisecond,
			Subscriber:        feed.SubscriberConfig{Owner: who, LeaseTTL: 300 * time.Millisecond},
		}, func(_ context.Context, env events.Envelope) error {
			return errors.New("poison")
		})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		t.Cleanup(func() { cancel(); require.ErrorIs(t, <-done, context.Canceled); _ = p.Close() })
		return p
	}
	state := func(p *feed.Processor) feed.PartitionState {
		s := p.Status()
		if len(s.Partitions) != 1 {
			return ""
		}
		return s.Partitions[0].State
	}
	older := start("a-old", []string{"a"})
	_, err = st.Append(context.Background(), "s-1", events.AnyVersion, events.Event{Data: events.Raw{Type: "a", Payload: []byte(`{}`)}})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return state(older) == feed.PartitionHalted }, 5*time.Second, 5*time.Millisecond)

	newer := start("b-new", []string{"a", "b"})
	require.Eventually(t, func() bool {
		return state(newer) == feed.PartitionHalted && state(older) != feed.PartitionHalted && state(older) != feed.PartitionActive
	},
		5*time.Second, 5*time.Millisecond, "older %s newer %s", state(older), state(newer))
	// The newer process holds the partition (halted, under its lease): the
	// older one cannot deliver anything.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	t0 := time.Now()
	err = newer.AwaitTakeover(ctx)
	require.NoError(t, err, "AwaitTakeover blocked %v although this process holds its only partition (halted)", time.Since(t0))
}

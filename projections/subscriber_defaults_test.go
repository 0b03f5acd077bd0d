package projections_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// The documented defaults of feed.SubscriberConfig, which every projection
// runs with unless RunnerConfig.Subscriber says otherwise, observed through
// what a Subscriber asks of its Source. (feed has no accessor for them, and
// these tests live beside the projections that rely on them.)

// defaultsSpy records what a subscriber asks of the source it wraps.
type defaultsSpy struct {
	feed.Source
	mu      sync.Mutex
	limits  []int
	cps     *defaultsSpyCheckpoints
	renewed chan leaseCall // each Renew, in order
}

// leaseCall is one Acquire or Renew: its ttl, when it was called, and how
// long its context had left then.
type leaseCall struct {
	ttl, left time.Duration
	at        time.Time
}

func newDefaultsSpy(src feed.Source) *defaultsSpy {
	s := &defaultsSpy{Source: src, renewed: make(chan leaseCall, 64)}
	s.cps = &defaultsSpyCheckpoints{CheckpointStore: src.Checkpoints(), spy: s}
	return s
}

func (s *defaultsSpy) ReadFeed(ctx context.Context, after events.Token, f feed.Filter, limit int) (feed.Batch, error) {
	s.mu.Lock()
	s.limits = append(s.limits, limit)
	s.mu.Unlock()
	return s.Source.ReadFeed(ctx, after, f, limit)
}

func (s *defaultsSpy) Checkpoints() feed.CheckpointStore { return s.cps }

type defaultsSpyCheckpoints struct {
	feed.CheckpointStore
	spy      *defaultsSpy
	mu       sync.Mutex
	acquires []leaseCall
}

func callOf(ctx context.Context, ttl time.Duration) leaseCall {
	c := leaseCall{ttl: ttl, at: time.Now()}
	if d, ok := ctx.Deadline(); ok {
		c.left = d.Sub(c.at)
	}
	return c
}

func (c *defaultsSpyCheckpoints) Acquire(ctx context.Context, name, owner string, ttl time.Duration) (feed.Lease, error) {
	call := callOf(ctx, ttl)
	c.mu.Lock()
	c.acquires = append(c.acquires, call)
	c.mu.Unlock()
	return c.CheckpointStore.Acquire(ctx, name, owner, ttl)
}

func (c *defaultsSpyCheckpoints) Renew(ctx context.Context, l feed.Lease, ttl time.Duration) error {
	call := callOf(ctx, ttl)
	select {
	case c.spy.renewed <- call:
	default:
	}
	return c.CheckpointStore.Renew(ctx, l, ttl)
}

func receiveMsg(t *testing.T, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		require.True(t, ok, "the subscription ended")
		return m
	case <-time.After(waitTimeout):
		t.Fatal("no message delivered")
		return nil
	}
}

// TestSubscriberLeaseAndBatchDefaults: a zero SubscriberConfig (but its
// name) takes its lease for LeaseTTL 5s, renews it every LeaseTTL/3 for
// 5s again, and reads the feed 100 events at a time (BatchSize).
func TestSubscriberLeaseAndBatchDefaults(t *testing.T) {
	t.Parallel()
	f := newMemFixture(t)
	spy := newDefaultsSpy(f.source)
	sub, err := feed.NewSubscriber(spy, &feed.SubscriberConfig{ConsumerName: "defaults_lease", Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sub.Close()) })
	ch, err := sub.Subscribe(t.Context(), feed.TopicAll)
	require.NoError(t, err)
	f.append(t, "acct-a", Deposited{"a", 1})
	receiveMsg(t, ch).Ack()

	var first leaseCall
	select {
	case first = <-spy.renewed:
	case <-time.After(waitTimeout):
		t.Fatal("the lease was never renewed")
	}
	const ttl, every = 5 * time.Second, 5 * time.Second / 3
	spy.cps.mu.Lock()
	acquires := append([]leaseCall(nil), spy.cps.acquires...)
	spy.cps.mu.Unlock()
	require.NotEmpty(t, acquires)
	acquired := acquires[0]
	require.Equal(t, ttl, acquired.ttl, "the lease is taken for LeaseTTL (5s)")
	require.LessOrEqual(t, acquired.left, ttl, "an Acquire is given LeaseTTL to answer")
	require.Greater(t, acquired.left, ttl-time.Second)

	require.Equal(t, ttl, first.ttl, "the lease is renewed for LeaseTTL (5s)")
	require.LessOrEqual(t, first.left, every, "a Renew is given RenewInterval (LeaseTTL/3) to answer")
	require.Greater(t, first.left, every-500*time.Millisecond)
	require.GreaterOrEqual(t, first.at.Sub(acquired.at), every, "the first renewal comes RenewInterval (LeaseTTL/3) after the lease was taken")

	spy.mu.Lock()
	defer spy.mu.Unlock()
	require.NotEmpty(t, spy.limits)
	for _, l := range spy.limits {
		require.Equal(t, 100, l, "the feed is read BatchSize (100) events at a time")
	}
	require.Equal(t, 5*time.Second, feed.DefaultLeaseTTL)
	require.Equal(t, 100, feed.DefaultBatchSize)
}

// redeliveryGaps Nacks the first delivery of ch's next event n times and
// returns how long each redelivery took after its Nack, then Acks it.
func redeliveryGaps(t *testing.T, ch <-chan *message.Message, n int) []time.Duration {
	t.Helper()
	m := receiveMsg(t, ch)
	id := m.UUID
	var gaps []time.Duration
	for range n {
		nacked := time.Now()
		m.Nack()
		m = receiveMsg(t, ch)
		gaps = append(gaps, time.Since(nacked))
		require.Equal(t, id, m.UUID, "the Nacked event is delivered again")
	}
	m.Ack()
	return gaps
}

// TestSubscriberNackBackoffDefaults: a Nacked event is delivered again
// after NackBackoffMin (default 100ms), doubling with each Nack, up to
// NackBackoffMax (default 5s). The cap is observed with NackBackoffMin set
// to 3s, so the second wait (6s uncapped) is cut to the default 5s; this
// test so takes about 8 seconds.
func TestSubscriberNackBackoffDefaults(t *testing.T) {
	t.Parallel()
	t.Run("min", func(t *testing.T) {
		t.Parallel()
		f := newMemFixture(t)
		sub, err := feed.NewSubscriber(f.source, &feed.SubscriberConfig{ConsumerName: "defaults_nack_min", Logger: quiet})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, sub.Close()) })
		ch, err := sub.Subscribe(t.Context(), feed.TopicAll)
		require.NoError(t, err)
		f.append(t, "acct-a", Deposited{"a", 1})
		gaps := redeliveryGaps(t, ch, 3)
		t.Logf("redelivered after %v", gaps)
		for i, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
			require.GreaterOrEqual(t, gaps[i], want, "Nack %d: redelivered after NackBackoffMin (100ms) doubled %d times", i+1, i)
		}
		require.Less(t, gaps[0], 200*time.Millisecond, "the first wait is NackBackoffMin (100ms)")
		require.Equal(t, 100*time.Millisecond, feed.DefaultNackBackoffMin)
	})
	t.Run("max", func(t *testing.T) {
		t.Parallel()
		f := newMemFixture(t)
		sub, err := feed.NewSubscriber(f.source, &feed.SubscriberConfig{
			ConsumerName: "defaults_nack_max", Logger: quiet, NackBackoffMin: 3 * time.Second,
		})
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, sub.Close()) })
		ch, err := sub.Subscribe(t.Context(), feed.TopicAll)
		require.NoError(t, err)
		f.append(t, "acct-a", Deposited{"a", 1})
		gaps := redeliveryGaps(t, ch, 2)
		t.Logf("redelivered after %v", gaps)
		require.GreaterOrEqual(t, gaps[0], 3*time.Second)
		require.GreaterOrEqual(t, gaps[1], 5*time.Second, "the second wait is capped at NackBackoffMax (5s), not below")
		require.Less(t, gaps[1], 6*time.Second, "the second wait (6s doubled) is capped at NackBackoffMax (5s)")
		require.Equal(t, 5*time.Second, feed.DefaultNackBackoffMax)
	})
}

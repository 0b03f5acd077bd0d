package feed_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
)

// slowAcquire holds a consumer's first lease acquire until the test lets
// it go, then treats it as PostgreSQL treats a statement its client gave
// up on: the lease is taken on the server whatever happened to ctx, and
// a caller whose ctx ended meanwhile hears only of the cancellation.
type slowAcquire struct {
	feed.CheckpointStore
	first    sync.Once
	inflight chan struct{}
	release  chan struct{}
}

func (a *slowAcquire) Acquire(ctx context.Context, name, owner string, ttl time.Duration) (feed.Lease, error) {
	first := false
	a.first.Do(func() { first = true })
	if !first {
		return a.CheckpointStore.Acquire(ctx, name, owner, ttl)
	}
	close(a.inflight)
	select {
	case <-ctx.Done():
	case <-a.release:
	}
	l, err := a.CheckpointStore.Acquire(context.Background(), name, owner, ttl)
	if err == nil && ctx.Err() != nil {
		return feed.Lease{}, ctx.Err()
	}
	return l, err
}

type slowAcquireSource struct {
	*memstore.Store
	cps *slowAcquire
}

func (s slowAcquireSource) Checkpoints() feed.CheckpointStore { return s.cps }

// TestStoppedConsumerLeavesNoLease: a subscription ended while its lease
// acquire is in flight waits for the acquire and gives back what it took,
// so the next consumer takes over at once, not after the lease's TTL.
func TestStoppedConsumerLeavesNoLease(t *testing.T) {
	t.Parallel()
	st, err := memstore.New(nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, st.Close()) }()
	cps := &slowAcquire{CheckpointStore: st.Checkpoints(), inflight: make(chan struct{}), release: make(chan struct{})}
	sub, err := feed.NewSubscriber(slowAcquireSource{Store: st, cps: cps}, &feed.SubscriberConfig{
		ConsumerName: "stopping", LeaseTTL: time.Hour,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	_, err = sub.Subscribe(ctx, feed.TopicAll)
	require.NoError(t, err)

	<-cps.inflight
	cancel()
	close(cps.release)
	require.NoError(t, sub.Close())

	_, err = st.Checkpoints().Acquire(t.Context(), "stopping", "next", time.Hour)
	require.NoError(t, err, "the stopped consumer gave its lease back")
}

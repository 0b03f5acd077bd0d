package feed_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
)

// abandonedHeartbeat holds a processor's first membership heartbeat until
// its context ends. When it ends by cancellation, the heartbeat is treated
// as PostgreSQL treats a statement its client gave up on: it still lands,
// here just after the member's Leave, which would make the member live
// again for a whole TTL.
type abandonedHeartbeat struct {
	feed.CheckpointStore
	first, leaving sync.Once
	inflight       chan struct{}
	left           chan struct{}
	late           sync.WaitGroup
	member         string
}

func (h *abandonedHeartbeat) Heartbeat(ctx context.Context, group, member string, ttl time.Duration) ([]string, error) {
	first := false
	h.first.Do(func() { first = true })
	if !first {
		return h.CheckpointStore.Heartbeat(ctx, group, member, ttl)
	}
	h.member = member
	close(h.inflight)
	<-ctx.Done()
	if errors.Is(ctx.Err(), context.Canceled) {
		h.late.Add(1)
		go func() {
			defer h.late.Done()
			<-h.left
			_, _ = h.CheckpointStore.Heartbeat(context.Background(), group, member, ttl)
		}()
	}
	return nil, ctx.Err()
}

func (h *abandonedHeartbeat) Leave(ctx context.Context, group, member string) error {
	h.leaving.Do(func() { close(h.left) })
	return h.CheckpointStore.Leave(ctx, group, member)
}

type abandonedSource struct {
	*memstore.Store
	cps *abandonedHeartbeat
}

func (s abandonedSource) Checkpoints() feed.CheckpointStore { return s.cps }

// TestStoppedMemberLeavesForGood: a processor closed while its membership
// heartbeat is in flight lets the heartbeat finish before it leaves, so no
// heartbeat lands after the leave: afterwards the group does not list it,
// and the others own every partition at once rather than after a TTL.
func TestStoppedMemberLeavesForGood(t *testing.T) {
	t.Parallel()
	st, err := memstore.New(nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, st.Close()) }()
	cps := &abandonedHeartbeat{CheckpointStore: st.Checkpoints(), inflight: make(chan struct{}), left: make(chan struct{})}
	p, err := feed.NewProcessor(abandonedSource{Store: st, cps: cps}, &feed.ProcessorConfig{
		Name: "leaving", Subscriber: feed.SubscriberConfig{LeaseTTL: time.Second},
	}, func(context.Context, events.Envelope) error { return nil })
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	require.NoError(t, p.AddHandlers(router))
	done := make(chan error, 1)
	go func() { done <- router.Run(context.Background()) }()
	<-router.Running()

	<-cps.inflight
	require.NoError(t, p.Close())
	require.NoError(t, router.Close())
	require.NoError(t, <-done)
	cps.late.Wait()

	members, err := st.Checkpoints().Heartbeat(context.Background(), "leaving", "probe", time.Second)
	require.NoError(t, err)
	require.Equal(t, []string{"probe"}, members, "the closed processor %s is not a member any more", cps.member)
}

package converge_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/projections"
)

// offsetClock is the wall clock moved by an offset that can change.
type offsetClock struct{ offset atomic.Int64 }

func (c *offsetClock) Now() time.Time { return time.Now().Add(time.Duration(c.offset.Load())) }

// TestLagStaleHeartbeatIsAtLeastTheDefault: the lag monitor calls a
// consumer with events to apply stalled once its heartbeat is older than
// the subscribers' lease TTL, but never sooner than
// lag.DefaultStaleHeartbeat: with a lease TTL of 1.5s, a live projection
// busy on an event, whose heartbeat the monitor's clock sees 3s old, is
// not stalled; seen 6s old, it is. The store keeps the wall clock, so the
// lease stays held and renewed throughout; only the monitor's clock (the
// client's) runs ahead.
func TestLagStaleHeartbeatIsAtLeastTheDefault(t *testing.T) {
	t.Parallel()
	const ttl = 1500 * time.Millisecond
	require.Equal(t, 5*time.Second, lag.DefaultStaleHeartbeat)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	store, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })

	slow, busy, release := busyProjection()
	clock := &offsetClock{}
	client, err := converge.NewClient(store, &converge.Config{
		Projections: []*projections.Projection{slow},
		Subscriber:  feed.SubscriberConfig{LeaseTTL: ttl},
		Clock:       clock,
		Logger:      slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	run(t, client)
	t.Cleanup(func() { close(release) })
	_, err = client.Appender().Append(ctx, "order-1", events.NoStream, events.Event{Data: OrderPlaced{OrderID: "1"}})
	require.NoError(t, err)
	select {
	case <-busy: // the projection holds its lease, one event behind
	case <-ctx.Done():
		t.Fatal("the projection never took the order")
	}

	report := func() lag.Report {
		t.Helper()
		reports, err := client.Lag().Check(ctx)
		require.NoError(t, err)
		require.Len(t, reports, 1)
		return reports[0]
	}
	clock.offset.Store(int64(3 * time.Second))
	r := report()
	require.Positive(t, r.PositionLag)
	require.NotEmpty(t, r.Owner, "the lease is held")
	require.Greater(t, r.HeartbeatAge, 2*ttl, "the monitor sees the heartbeat past twice the lease TTL")
	require.False(t, r.Breached, "a heartbeat of %s, under lag.DefaultStaleHeartbeat, is not stalled (%s)", r.HeartbeatAge, r.Reason)

	clock.offset.Store(int64(6 * time.Second))
	r = report()
	require.Positive(t, r.PositionLag)
	require.NotEmpty(t, r.Owner, "the lease is held")
	require.True(t, r.Breached, "a heartbeat of %s, past lag.DefaultStaleHeartbeat, is stalled", r.HeartbeatAge)
	require.Equal(t, lag.ReasonStalled, r.Reason)
}

package converge_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/internal/clocktest"
	"github.com/converge-es/converge/projections"
)

// TestLagStaleHeartbeatFollowsTheLeaseTTL: a holder beats its heart when
// it renews its lease, every third of the lease TTL; with the TTL raised
// to a minute, a live projection busy on a slow event has a heartbeat up
// to 20 s old. The client's lag monitor must not call it stalled for a
// heartbeat younger than the lease TTL (it used the monitor's 5 s
// default), and still does past the TTL.
func TestLagStaleHeartbeatFollowsTheLeaseTTL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := clocktest.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	store, err := memstore.New(&memstore.Config{Registry: shopRegistry(), Clock: clock})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })

	slow, busy, release := busyProjection()
	client, err := converge.NewClient(store, &converge.Config{
		Projections: []*projections.Projection{slow},
		Subscriber:  feed.SubscriberConfig{LeaseTTL: time.Minute},
		Clock:       clock,
		Logger:      slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	start(t, client)
	t.Cleanup(func() { close(release) })
	_, err = client.Appender().Append(ctx, "order-1", events.NoStream, events.Event{Data: OrderPlaced{OrderID: "1"}})
	require.NoError(t, err)
	<-busy // the projection holds its lease, one event behind

	report := func() lag.Report {
		t.Helper()
		reports, err := client.Lag().Check(ctx)
		require.NoError(t, err)
		for _, r := range reports {
			if r.Name == "slow" {
				return r
			}
		}
		require.FailNow(t, "no report of slow")
		return lag.Report{}
	}
	clock.Advance(10 * time.Second) // past 5 s, within the minute
	r := report()
	require.Positive(t, r.PositionLag)
	require.False(t, r.Breached, "a heartbeat of %s under a one-minute lease is not stalled (%s)", r.HeartbeatAge, r.Reason)
	clock.Advance(2 * time.Minute)
	r = report()
	require.True(t, r.Breached, "a heartbeat of %s, past the lease TTL, is stalled", r.HeartbeatAge)
	require.Equal(t, lag.ReasonStalled, r.Reason)
}

// busyProjection is a projection named "slow" whose handler signals busy
// on its first OrderPlaced and holds it until release is closed (or its
// context ends).
func busyProjection() (slow *projections.Projection, busy, release chan struct{}) {
	busy, release = make(chan struct{}), make(chan struct{})
	slow = projections.New("slow", &projections.Config{SLA: time.Hour})
	projections.On(slow, func(ctx context.Context, _ *projections.Tx, _ events.Envelope, _ OrderPlaced) error {
		close(busy)
		select {
		case <-release:
		case <-ctx.Done():
		}
		return ctx.Err()
	})
	return slow, busy, release
}

package converge_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
	"github.com/converge-es/converge/saga"
)

// TestLagOfAPartitionedProjection: the client's lag monitor follows a
// projection split into partitions by its partitions' checkpoints (none
// of which is the projection's name): once the projection has caught up,
// its report is at the head, not at the start of the feed in breach.
func TestLagOfAPartitionedProjection(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		status := projections.New("split_status", &projections.Config{Partitions: 3})
		projections.On(status, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderPlaced) error {
			return tx.Table("orders").Put(ctx, e.OrderID, "placed")
		})
		client, err := converge.NewClient(store, &converge.Config{
			Projections: []*projections.Projection{status},
			Subscriber:  feed.SubscriberConfig{LeaseTTL: time.Minute},
			Logger:      slog.New(slog.DiscardHandler),
		})
		require.NoError(t, err)
		start(t, client)

		for i := range 12 {
			_, err := client.Appender().Append(ctx, fmt.Sprint("order-", i), events.NoStream, events.Event{Data: OrderPlaced{OrderID: fmt.Sprint(i)}})
			require.NoError(t, err)
		}
		head, err := store.Head(ctx)
		require.NoError(t, err)
		st, err := client.Tracker().Wait(upToCap(t), head, "split_status")
		require.NoError(t, err)
		require.False(t, st.Stale)

		reports, err := client.Lag().Check(ctx)
		require.NoError(t, err)
		require.Len(t, reports, 1)
		r := reports[0]
		require.Equal(t, "split_status", r.Name)
		require.False(t, r.Checkpoint.Before(head), "the report stands at the slowest partition, which has caught up")
		require.Zero(t, r.PositionLag)
		require.False(t, r.Breached, "a caught-up projection in breach: %s", r.Reason)
	})
}

// TestLagWatchesTheSagaProcessor: the client's lag monitor reports the
// saga processor too, under Config.SagaProcessor with SagaLagSLA, standing
// at its slowest partition; a client with sagas and no projections has a
// monitor all the same.
func TestLagWatchesTheSagaProcessor(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		cfg := shop(store, func(string) *projections.View { return nil })
		cfg.Projections = nil
		cfg.Sagas = []saga.Definition{chargeOnly()}
		cfg.Subscriber = feed.SubscriberConfig{LeaseTTL: time.Minute}
		client, err := converge.NewClient(store, cfg)
		require.NoError(t, err)
		require.NotNil(t, client.Lag(), "sagas alone have a lag monitor")
		start(t, client)

		res, err := client.Appender().Append(ctx, "order-1", events.NoStream, events.Event{Data: OrderPlaced{OrderID: "1", Cents: 100}})
		require.NoError(t, err)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			reports, err := client.Lag().Check(ctx)
			require.NoError(c, err)
			i := slices.IndexFunc(reports, func(r lag.Report) bool { return r.Name == converge.DefaultSagaProcessor })
			require.GreaterOrEqual(c, i, 0, "the saga processor is watched")
			r := reports[i]
			assert.Equal(c, "saga", r.Class)
			assert.Equal(c, converge.SagaLagSLA, r.SLA)
			assert.False(c, r.Checkpoint.Before(res.Token), "the processor passed the order")
		}, 30*time.Second, 10*time.Millisecond)
	})
}

// chargeOnly is a saga that starts on an order and sends nothing: no
// command handler or read model is needed to run it.
func chargeOnly() saga.Definition {
	type st struct{}
	s := saga.New[st]("noted", nil)
	saga.StartOn(s, func(e OrderPlaced, _ events.Envelope) string { return e.OrderID },
		func(s *saga.Step[st], _ OrderPlaced) error { s.Complete(); return nil })
	return s
}

// TestLagWatchesTheCommandHandlers: each command handler's consumer is a
// lag target of its own ("command.<handler>", class "command", with
// CommandLagSLA). A handler whose command keeps failing holds its consumer
// back, and the monitor says so while everything else is caught up; once
// the command goes through, the breach ends.
func TestLagWatchesTheCommandHandlers(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		var client *converge.Client
		cfg := shop(store, func(name string) *projections.View { return client.Projections().View(name) })
		var down atomic.Bool
		down.Store(true)
		cfg.Commands = []cqrs.CommandHandler{gatewayDown{CommandHandler: cfg.Commands[0], down: &down}}
		// An hour ahead of the store's clock: any event left unprocessed
		// is an hour old, far past every SLA, and caught-up targets have
		// none.
		cfg.Clock = aheadClock(time.Hour)
		cfg.Subscriber = feed.SubscriberConfig{LeaseTTL: time.Minute}
		client, err := converge.NewClient(store, cfg)
		require.NoError(t, err)
		start(t, client)

		_, err = client.Appender().Append(ctx, "order-1", events.NoStream, events.Event{Data: OrderPlaced{OrderID: "1", Cents: 100}})
		require.NoError(t, err)
		want := command.DefaultConsumerPrefix + ".charge-card"
		byName := func(c *assert.CollectT) map[string]lag.Report {
			reports, err := client.Lag().Check(ctx)
			require.NoError(c, err)
			out := map[string]lag.Report{}
			for _, r := range reports {
				out[r.Name] = r
			}
			require.Contains(c, out, want)
			return out
		}
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			rs := byName(c)
			r := rs[want]
			assert.Equal(c, "command", r.Class)
			assert.Equal(c, converge.CommandLagSLA, r.SLA)
			assert.NotEmpty(c, r.Owner, "the report is of the consumer that runs")
			assert.Positive(c, r.PositionLag, "the failing command is not processed")
			assert.True(c, r.Breached, "a handler stuck on its command breaches")
			for name, o := range rs {
				if name != want {
					assert.False(c, o.Breached, "%s is caught up: %s", name, o.Reason)
				}
			}
		}, 30*time.Second, 10*time.Millisecond)

		down.Store(false)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			for name, r := range byName(c) {
				assert.False(c, r.Breached, "%s: %s", name, r.Reason)
				assert.Zero(c, r.PositionLag, "%s", name)
			}
		}, 30*time.Second, 10*time.Millisecond, "the command went through")
	})
}

// gatewayDown fails every command while down is set.
type gatewayDown struct {
	cqrs.CommandHandler
	down *atomic.Bool
}

func (g gatewayDown) Handle(ctx context.Context, cmd any) error {
	if g.down.Load() {
		return errors.New("card gateway down")
	}
	return g.CommandHandler.Handle(ctx, cmd)
}

// aheadClock is the wall clock moved by d.
type aheadClock time.Duration

func (a aheadClock) Now() time.Time { return time.Now().Add(time.Duration(a)) }

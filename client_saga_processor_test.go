package converge_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/projections"
	"github.com/converge-es/converge/saga"
)

// TestSagaProcessorRunsUnderItsConfiguredName: with Config.SagaProcessor
// set, the saga processor's partitions checkpoint and hold their leases
// under that name in the store (feed.Inspector.Consumers), its membership
// group is that name, the Tracker knows its position by it, and the lag
// monitor reports it under it; nothing is stored or reported under
// DefaultSagaProcessor.
func TestSagaProcessorRunsUnderItsConfiguredName(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		const name, parts = "shop.order-sagas", 3
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		var client *converge.Client
		cfg := shop(store, func(name string) *projections.View { return client.Projections().View(name) })
		cfg.Subscriber = feed.SubscriberConfig{LeaseTTL: time.Minute}
		cfg.SagaProcessor = name
		cfg.SagaPartitions = parts
		client, err := converge.NewClient(store, cfg)
		require.NoError(t, err)
		require.Equal(t, name, client.SagaProcessor().Name())
		want := make([]string, parts)
		for i := range want {
			want[i] = fmt.Sprintf("%s#%d/%d", name, i, parts)
		}
		require.Equal(t, want, client.SagaProcessor().CheckpointNames())
		run(t, client)
		placeAndAwait(t, client, 0, 6)

		// The Tracker knows the processor by its name, as the lowest of
		// its partitions.
		head, err := store.Head(ctx)
		require.NoError(t, err)
		waitCtx, waitCancel := context.WithTimeout(ctx, 30*time.Second)
		st, err := client.Tracker().Wait(waitCtx, head, name)
		waitCancel()
		require.NoError(t, err)
		require.False(t, st.Stale, "the Tracker does not know the saga processor by %q", name)

		// The store holds its partitions' checkpoints and leases under it.
		cs, err := store.Consumers(ctx)
		require.NoError(t, err)
		held := map[string]bool{}
		for _, c := range cs {
			require.False(t, strings.HasPrefix(c.Name, converge.DefaultSagaProcessor), "a consumer under the default name: %s", c.Name)
			if strings.HasPrefix(c.Name, name) {
				held[c.Name] = c.Owner != ""
			}
		}
		require.Equal(t, map[string]bool{want[0]: true, want[1]: true, want[2]: true}, held)

		// Its status and its membership group are under it.
		status := client.SagaProcessor().Status()
		require.Equal(t, name, status.Name)
		require.Len(t, status.Partitions, parts)
		for i, p := range status.Partitions {
			require.Equal(t, want[i], p.Checkpoint)
		}
		require.Contains(t, status.Members, status.Member)

		// The lag monitor reports it under it, as a saga processor.
		reports, err := client.Lag().Check(ctx)
		require.NoError(t, err)
		i := slices.IndexFunc(reports, func(r lag.Report) bool { return r.Name == name })
		require.GreaterOrEqual(t, i, 0, "no lag report of %q", name)
		require.Equal(t, "saga", reports[i].Class)
		require.Equal(t, converge.SagaLagSLA, reports[i].SLA)
		require.False(t, reports[i].Breached, "%s", reports[i].Reason)
		require.False(t, slices.ContainsFunc(reports, func(r lag.Report) bool { return r.Name == converge.DefaultSagaProcessor }))

		// Last, as a second member moves partitions: the store's group of
		// that name has the client's processor in it, the default's
		// nobody.
		const probe = "~probe"
		members, err := store.Checkpoints().Heartbeat(ctx, name, probe, time.Second)
		require.NoError(t, err)
		require.NoError(t, store.Checkpoints().Leave(ctx, name, probe))
		require.Contains(t, members, status.Member, "the processor's membership group is not %q", name)
		members, err = store.Checkpoints().Heartbeat(ctx, converge.DefaultSagaProcessor, probe, time.Second)
		require.NoError(t, err)
		require.NoError(t, store.Checkpoints().Leave(ctx, converge.DefaultSagaProcessor, probe))
		require.Equal(t, []string{probe}, members)
	})
}

// TestSagaPartitionsDefaultSplitsByCorrelation: the saga processor has
// DefaultSagaPartitions (8) partitions when Config.SagaPartitions is
// left zero, keyed by correlation id, so an instance whose step is slow
// holds up only the instances in its own partition. Here one step blocks:
// orders whose correlation ids fall in each of the other seven partitions
// complete meanwhile (their streams hash to the slow one's partition, so
// by-stream partitions would have held them), while an order of the slow
// one's partition (whose stream hashes elsewhere) waits behind it.
func TestSagaPartitionsDefaultSplitsByCorrelation(t *testing.T) {
	t.Parallel()
	const count = converge.DefaultSagaPartitions
	require.Equal(t, 8, count)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	store, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })

	stream := func(id string) string { return "order-" + id }
	const slow = "slow"
	slowPart, slowStreamPart := feed.PartitionOf(slow, count), feed.PartitionOf(stream(slow), count)
	// others[p] completes while the slow step blocks: its correlation is
	// in partition p, its stream hashes to the slow order's partition.
	others := map[int]string{}
	neighbour := ""
	for i := 0; len(others) < count-1 || neighbour == ""; i++ {
		require.Less(t, i, 100_000, "no ids found")
		id := fmt.Sprint("o", i)
		p, sp := feed.PartitionOf(id, count), feed.PartitionOf(stream(id), count)
		switch {
		case p == slowPart && sp != slowPart && sp != slowStreamPart && neighbour == "":
			neighbour = id
		case p != slowPart && sp == slowPart && others[p] == "":
			others[p] = id
		}
	}

	entered, release := make(chan struct{}), make(chan struct{})
	flow := saga.New[struct{}]("split", nil)
	saga.StartOn(flow, func(e OrderPlaced, _ events.Envelope) string { return e.OrderID },
		func(s *saga.Step[struct{}], e OrderPlaced) error {
			if e.OrderID == slow {
				close(entered)
				select {
				case <-release:
				case <-s.Context().Done():
					return s.Context().Err()
				}
			}
			s.Complete()
			return nil
		})
	client, err := converge.NewClient(store, &converge.Config{
		Sagas:      []saga.Definition{flow},
		Subscriber: feed.SubscriberConfig{LeaseTTL: time.Minute},
		Logger:     slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	names := client.SagaProcessor().CheckpointNames()
	require.Len(t, names, count)
	for i, n := range names {
		require.Equal(t, feed.PartitionName(converge.DefaultSagaProcessor, i, count), n)
	}
	run(t, client)
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()

	place := func(id string) {
		t.Helper()
		_, err := client.Appender().Append(ctx, stream(id), events.NoStream, events.Event{
			Data: OrderPlaced{OrderID: id}, Metadata: events.Metadata{CorrelationID: id},
		})
		require.NoError(t, err)
	}
	place(slow)
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("the slow step never ran")
	}
	place(neighbour)
	for _, id := range others {
		place(id)
	}
	status := func(c *assert.CollectT, id string) saga.Status {
		tl, err := client.Sagas().Show(ctx, "split", id)
		if assert.NoError(c, err, "order %s", id) {
			return tl.Info.Status
		}
		return ""
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for p, id := range others {
			assert.Equal(c, saga.StatusCompleted, status(c, id), "order %s of partition %d", id, p)
		}
	}, 30*time.Second, 5*time.Millisecond, "orders of the other partitions waited for the slow step")
	_, err = client.Sagas().Show(ctx, "split", neighbour)
	require.ErrorIs(t, err, saga.ErrNotFound, "an order of the slow step's partition ran before it")

	close(release)
	released = true
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, saga.StatusCompleted, status(c, slow))
		assert.Equal(c, saga.StatusCompleted, status(c, neighbour))
	}, 30*time.Second, 5*time.Millisecond)
}

// TestSagaPartitionsChangeCarriesThePositionOver: changing
// Config.SagaPartitions carries the saga processor's position over: a
// process of the new count takes none of what the old count handled, and
// goes on from there. Processes of the two counts may also run at once,
// as in a rolling deploy: orders placed while they overlap complete, each
// order's command sent once and its card charged once.
func TestSagaPartitionsChangeCarriesThePositionOver(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		mk := func(partitions int) *converge.Client {
			var c *converge.Client
			cfg := shop(store, func(name string) *projections.View { return c.Projections().View(name) })
			// Short, so the process that stays learns soon that the
			// other left (at its next membership heartbeat).
			cfg.Subscriber = feed.SubscriberConfig{LeaseTTL: 3 * time.Second}
			cfg.SagaPartitions = partitions
			c, err := converge.NewClient(store, cfg)
			require.NoError(t, err)
			return c
		}
		two := mk(2)
		run(t, two)
		placeAndAwait(t, two, 0, 6)
		stop(t, two)

		// The new count goes on where the old one stood.
		five := mk(5)
		require.NoError(t, five.Start(ctx))
		fiveStopped := false
		defer func() {
			if !fiveStopped {
				stopQuietly(five)
			}
		}()
		head, err := store.Head(ctx)
		require.NoError(t, err)
		waitCtx, waitCancel := context.WithTimeout(ctx, 30*time.Second)
		st, err := five.Tracker().Wait(waitCtx, head, converge.DefaultSagaProcessor)
		waitCancel()
		require.NoError(t, err)
		require.False(t, st.Stale)
		m := five.Sagas().Metrics()
		require.Zero(t, counterSum(m.Steps), "the new count ran steps of orders the old one had handled")
		require.Zero(t, counterSum(m.Duplicates), "the new count was handed messages the old one had handled")
		require.Zero(t, counterSum(m.Ignored), "the new count was handed messages the old one had handled")
		placeAndAwait(t, five, 6, 4)

		// A rolling deploy to a third count: both run for a while, then
		// the old process stops.
		three := mk(3)
		run(t, three)
		for i := 10; i < 22; i++ {
			id := fmt.Sprint(i)
			_, err := three.Appender().Append(ctx, "order-"+id, events.NoStream, events.Event{
				Data: OrderPlaced{OrderID: id, Cents: i}, Metadata: events.Metadata{CorrelationID: id},
			})
			require.NoError(t, err)
		}
		require.NoError(t, five.Stop(ctx))
		fiveStopped = true
		placeAndAwait(t, three, 22, 2) // waits for the 24 to complete
		for i := range 24 {
			id := fmt.Sprint(i)
			cmds, err := store.ReadStream(ctx, command.StreamFor("shop.charge_card", id), 1, 10)
			require.NoError(t, err)
			require.Len(t, cmds, 1, "order %s: commands sent", id)
			charges, err := store.ReadStream(ctx, "card-"+id, 1, 10)
			require.NoError(t, err)
			require.Len(t, charges, 1, "order %s: charges", id)
		}
	})
}

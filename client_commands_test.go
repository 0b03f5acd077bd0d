package converge_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/projections"
	"github.com/converge-es/converge/saga"
)

// TestSagasWithTheirCommandsHandledElsewhere: a client with sagas and no
// command handlers checks nothing about the commands its steps send. They
// wait in their command streams for another process, whose client runs
// only the handlers; the saga then completes.
func TestSagasWithTheirCommandsHandledElsewhere(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		var sagas *converge.Client
		cfg := shop(store, func(name string) *projections.View { return sagas.Projections().View(name) })
		handlers := cfg.Commands
		cfg.Commands = nil
		sagas, err := converge.NewClient(store, cfg)
		require.NoError(t, err)
		start(t, sagas)

		_, err = sagas.Appender().Append(ctx, "order-7", events.NoStream, events.Event{Data: OrderPlaced{OrderID: "7", Cents: 700}})
		require.NoError(t, err)
		stream := command.StreamFor("shop.charge_card", "7")
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			cmds, err := store.ReadStream(ctx, stream, 0, 10)
			require.NoError(c, err)
			require.Len(c, cmds, 1, "the step sent its command")
		}, 30*time.Second, 5*time.Millisecond)
		tl, err := sagas.Sagas().Show(ctx, "checkout", "7")
		require.NoError(t, err)
		require.Equal(t, saga.StatusRunning, tl.Info.Status, "no handler here is no failure: %s", tl.Info.Reason)

		elsewhere, err := converge.NewClient(store, &converge.Config{Commands: handlers, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		start(t, elsewhere)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			tl, err := sagas.Sagas().Show(ctx, "checkout", "7")
			require.NoError(c, err)
			require.Equal(c, saga.StatusCompleted, tl.Info.Status)
		}, 30*time.Second, 5*time.Millisecond, "the other process's handler charged the card")
	})
}

// TestSagasWithSomeCommandHandlersSendOnlyThose: once a client runs
// command handlers, a step sending a command none of them handles fails
// its instance with saga.ErrNoCommandHandler, and the command is not sent.
func TestSagasWithSomeCommandHandlersSendOnlyThose(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	type RefundCard struct {
		OrderID string `json:"order_id"`
	}
	reg := shopRegistry()
	events.Register[RefundCard](reg, "shop.refund_card")
	store, err := memstore.New(&memstore.Config{Registry: reg})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })

	var client *converge.Client
	cfg := shop(store, func(name string) *projections.View { return client.Projections().View(name) })
	refund := command.Handle("refund-card", store, events.Aggregate[int]{Apply: func(n int, _ any) (int, error) { return n + 1, nil }},
		func(c RefundCard) string { return "card-" + c.OrderID },
		func(context.Context, int, RefundCard) ([]any, error) { return nil, nil })
	cfg.Commands = []cqrs.CommandHandler{refund} // the charge handler is not here
	client, err = converge.NewClient(store, cfg)
	require.NoError(t, err)
	start(t, client)

	_, err = client.Appender().Append(ctx, "order-8", events.NoStream, events.Event{Data: OrderPlaced{OrderID: "8", Cents: 800}})
	require.NoError(t, err)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		tl, err := client.Sagas().Show(ctx, "checkout", "8")
		require.NoError(c, err)
		require.Equal(c, saga.StatusFailed, tl.Info.Status)
		require.Contains(c, tl.Info.Reason, saga.ErrNoCommandHandler.Error())
	}, 30*time.Second, 5*time.Millisecond)
	cmds, err := store.ReadStream(ctx, command.StreamFor("shop.charge_card", "8"), 0, 10)
	require.NoError(t, err)
	require.Empty(t, cmds, "a failed step sends nothing")
}

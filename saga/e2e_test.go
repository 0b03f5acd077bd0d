package saga_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
)

// counter is the state of the test's aggregates: how many events they hold.
var counter = events.Aggregate[int]{Apply: func(n int, _ any) (int, error) { return n + 1, nil }}

// commandHandlers play the services the order saga talks to.
func commandHandlers(store saga.Store) []cqrs.CommandHandler {
	return []cqrs.CommandHandler{
		command.Handle("reserve-stock", store, counter, func(c ReserveStock) string { return "stock-" + c.OrderID },
			func(_ context.Context, _ int, c ReserveStock) ([]any, error) {
				return []any{StockReserved(c)}, nil
			}),
		command.Handle("charge-payment", store, counter, func(c ChargePayment) string { return "payment-" + c.OrderID },
			func(_ context.Context, _ int, c ChargePayment) ([]any, error) {
				if c.Amount > 100 {
					return nil, command.Reject("insufficient funds")
				}
				return []any{PaymentCharged{OrderID: c.OrderID}}, nil
			}),
		command.Handle("ship-order", store, counter, func(c ShipOrder) string { return "shipping-" + c.OrderID },
			func(context.Context, int, ShipOrder) ([]any, error) { return nil, nil }),
		command.Handle("release-stock", store, counter, func(c ReleaseStock) string { return "stock-" + c.OrderID },
			func(context.Context, int, ReleaseStock) ([]any, error) { return nil, nil }),
		command.Handle("notify-customer", store, counter, func(c NotifyCustomer) string { return "customer-" + c.OrderID },
			func(context.Context, int, NotifyCustomer) ([]any, error) { return nil, nil }),
	}
}

// TestEndToEndOverWatermill runs the order saga and its command handlers on
// one Watermill router over the feed, with every delivery duplicated by
// Watermill's Duplicator middleware: each command is sent once, handled
// once, and a rejected charge comes back to the saga as command.Rejected.
func TestEndToEndOverWatermill(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		b := newBare(t, mk)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		logger := watermill.NopLogger{}
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, logger)
		require.NoError(t, err)
		router.AddMiddleware(middleware.Recoverer, middleware.Duplicator)

		cp, err := command.NewProcessor(&command.ProcessorConfig{Store: b.store, Router: router, Subscriber: fastSubscriber()})
		require.NoError(t, err)
		require.NoError(t, cp.AddHandlers(commandHandlers(b.store)...))
		eng, err := saga.NewEngine(&saga.EngineConfig{Store: b.store, Sagas: []saga.Definition{orderSaga(false)}, Commands: cp})
		require.NoError(t, err)
		sc := fastSubscriber()
		sc.ConsumerName = "saga.orders"
		sub, err := feed.NewSubscriber(b.store, &sc)
		require.NoError(t, err)
		router.AddConsumerHandler("sagas", feed.TopicAll, sub, func(msg *message.Message) error {
			env, err := feed.EnvelopeFromMessage(msg)
			if err != nil {
				return err
			}
			return eng.Handle(msg.Context(), env)
		})
		require.NoError(t, eng.Start(ctx))
		done := make(chan error, 1)
		go func() { done <- router.Run(ctx) }()
		<-router.Running()
		defer func() {
			require.NoError(t, router.Close())
			require.NoError(t, <-done)
			require.NoError(t, eng.Stop(context.Background()))
		}()

		const n = 6
		for i := range n {
			total := 10 * (i + 1)
			if i == 3 {
				total = 500
			}
			_, err := b.store.Append(ctx, fmt.Sprintf("order-%d", i), events.NoStream, events.Event{Data: OrderPlaced{OrderID: fmt.Sprint(i), Total: total}})
			require.NoError(t, err)
		}
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			done, err := eng.List(ctx, saga.Filter{Status: saga.StatusCompleted})
			require.NoError(c, err)
			failed, err := eng.List(ctx, saga.Filter{Status: saga.StatusFailed})
			require.NoError(c, err)
			assert.Len(c, done, n-1, "completed")
			assert.Len(c, failed, 1, "failed")
		}, 30*time.Second, 5*time.Millisecond)

		tl, err := eng.Show(ctx, orders, "3")
		require.NoError(t, err)
		require.Equal(t, "payment.charge rejected: insufficient funds", tl.Info.Reason)
		ids := b.commandIDs(t)
		require.Len(t, ids["stock.reserve"], n)
		require.Len(t, ids["payment.charge"], n)
		require.Len(t, ids["order.ship"], n-1)
		require.Len(t, ids["stock.release"], 1)
		require.Len(t, ids["customer.notify"], 1)
		require.Greater(t, testutil.ToFloat64(eng.Metrics().Duplicates.WithLabelValues(orders)), 0.0, "the duplicated deliveries were no-ops")
	})
}

func fastSubscriber() feed.SubscriberConfig {
	return feed.SubscriberConfig{}
}

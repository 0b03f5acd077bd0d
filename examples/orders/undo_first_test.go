package orders_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/examples/orders"
)

// TestUndoBeforeTheActionRefusesTheAction: each command type has a
// consumer of its own, so a payment timeout's refund can be handled
// before the charge it races, and a release before the reservation. The
// early undo is recorded, and the late action is refused (the sender
// hears of it as command.Rejected): no money is taken and no units stay
// set aside for the cancelled order.
func TestUndoBeforeTheActionRefusesTheAction(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
		ctx := context.Background()
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
		require.NoError(t, err)
		p, err := command.NewProcessor(&command.ProcessorConfig{Store: store, Router: router})
		require.NoError(t, err)
		require.NoError(t, p.AddHandlers(orders.CommandHandlers(store)...))
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- router.Run(rctx) }()
		t.Cleanup(func() {
			cancel()
			require.NoError(t, router.Close())
			require.NoError(t, <-done)
		})
		_, err = store.Append(ctx, orders.StockStream("tea"), events.AnyVersion, events.Event{Data: orders.StockAdded{SKU: "tea", Qty: 5}})
		require.NoError(t, err)
		send := func(typ string, data any) {
			_, err := store.Append(ctx, command.StreamFor(typ, "o-9"), events.AnyVersion, events.Event{Data: data, Metadata: events.Metadata{CorrelationID: "o-9"}})
			require.NoError(t, err)
		}
		types := func(stream string) []string {
			envs, err := store.ReadStream(ctx, stream, 1, 100)
			require.NoError(t, err)
			out := make([]string, len(envs))
			for i, e := range envs {
				out[i] = e.Type
			}
			return out
		}
		rejections := func() int {
			v, err := store.StreamVersion(ctx, command.StreamFor(command.RejectedType, "o-9"))
			require.NoError(t, err)
			return int(v)
		}

		// The undos first...
		send("payments.refund_payment", orders.RefundPayment{OrderID: "o-9"})
		send("inventory.release_stock", orders.ReleaseStock{OrderID: "o-9", SKU: "tea"})
		require.Eventually(t, func() bool {
			return len(types(orders.PaymentStream("o-9"))) == 1 && len(types(orders.StockStream("tea"))) == 2
		}, 30*time.Second, 5*time.Millisecond)
		require.Equal(t, []string{"payments.payment_voided"}, types(orders.PaymentStream("o-9")))
		require.Equal(t, []string{"inventory.stock_added", "inventory.stock_reservation_voided"}, types(orders.StockStream("tea")))

		// ...then the actions they raced: both refused.
		card, err := orders.Tokenize("o-9", orders.CardOK)
		require.NoError(t, err)
		send(orders.ChargePaymentType, orders.ChargePayment{OrderID: "o-9", CustomerID: "c-1", Cents: 500, CardToken: card.Token})
		send(orders.ReserveStockType, orders.ReserveStock{OrderID: "o-9", SKU: "tea", Qty: 2})
		require.Eventually(t, func() bool { return rejections() == 2 }, 30*time.Second, 5*time.Millisecond)
		require.Equal(t, []string{"payments.payment_voided"}, types(orders.PaymentStream("o-9")), "no money taken")
		require.Equal(t, []string{"inventory.stock_added", "inventory.stock_reservation_voided"}, types(orders.StockStream("tea")), "no units set aside")

		// An undo after the action undoes it, once.
		send(orders.ReserveStockType, orders.ReserveStock{OrderID: "o-10", SKU: "tea", Qty: 2})
		require.Eventually(t, func() bool { return len(types(orders.StockStream("tea"))) == 3 }, 30*time.Second, 5*time.Millisecond)
		send("inventory.release_stock", orders.ReleaseStock{OrderID: "o-10", SKU: "tea"})
		require.Eventually(t, func() bool { return len(types(orders.StockStream("tea"))) == 4 }, 30*time.Second, 5*time.Millisecond)
		require.Equal(t, "inventory.stock_released", types(orders.StockStream("tea"))[3])
	})
}

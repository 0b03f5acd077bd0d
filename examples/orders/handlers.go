package orders

import (
	"context"
	"fmt"
	"math"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
)

// Test cards of the simulated payment gateway, which recognises them
// however their digits are separated ("4000 0000 0000 0002" too). Any
// other card is charged. Place tokenizes them (Tokenize): the gateway
// decides by the token.
const (
	// CardDeclined is refused by the gateway.
	CardDeclined = "4000-0000-0000-0002"
	// CardNoAnswer never gets an answer from the gateway: the saga's
	// payment timeout cancels the order.
	CardNoAnswer = "4000-0000-0000-0119"
	// CardOK is charged.
	CardOK = "4242-4242-4242-4242"
)

// Order is the state of the Order aggregate.
type Order struct {
	CustomerID string
	Cents      int64
	Status     string // StatusPending, StatusConfirmed, StatusCancelled; "" before OrderPlaced
}

var orderAggregate = events.Aggregate[Order]{Apply: func(o Order, e any) (Order, error) {
	switch e := e.(type) {
	case OrderPlaced:
		o.CustomerID, o.Cents, o.Status = e.CustomerID, e.Cents, StatusPending
	case OrderConfirmed:
		o.Status = StatusConfirmed
	case OrderCancelled:
		o.Status = StatusCancelled
	}
	return o, nil
}}

// Inventory is the state of one SKU.
type Inventory struct {
	OnHand   int
	Reserved map[string]int // by order id
	// Voided holds the orders whose release came before their
	// reservation.
	Voided map[string]bool
}

var inventoryAggregate = events.Aggregate[Inventory]{
	Initial: func() Inventory { return Inventory{Reserved: map[string]int{}, Voided: map[string]bool{}} },
	Apply: func(inv Inventory, e any) (Inventory, error) {
		switch e := e.(type) {
		case StockReservationVoided:
			inv.Voided[e.OrderID] = true
		case StockAdded:
			inv.OnHand = addUnits(inv.OnHand, e.Qty)
		case StockReserved:
			inv.OnHand -= e.Qty
			inv.Reserved[e.OrderID] = e.Qty
		case StockReleased:
			inv.OnHand = addUnits(inv.OnHand, e.Qty)
			delete(inv.Reserved, e.OrderID)
		}
		return inv, nil
	},
}

// addUnits puts qty units on a shelf holding onHand. Restock keeps shelves
// far below MaxInt (MaxOnHand), but a stream written before it did may hold
// a restock the sum cannot take: the shelf then stays full instead of
// wrapping to a negative that refuses every reservation.
func addUnits(onHand, qty int) int {
	if qty > 0 && onHand > math.MaxInt-qty {
		return math.MaxInt
	}
	return onHand + qty
}

// Payment is the state of one order's payment.
type Payment struct {
	CustomerID string
	Charged    int64
	Refunded   bool
	// Voided is set when the refund came before the charge.
	Voided bool
}

var paymentAggregate = events.Aggregate[Payment]{Apply: func(p Payment, e any) (Payment, error) {
	switch e := e.(type) {
	case PaymentVoided:
		p.Voided = true
	case PaymentCharged:
		p.CustomerID, p.Charged = e.CustomerID, e.Cents
	case PaymentRefunded:
		p.Refunded = true
	}
	return p, nil
}}

// CommandHandlers returns the handlers of every command the saga sends.
// Each loads its aggregate, decides, and appends with the expected version
// (command.Handle); a command delivered twice appends nothing the second
// time. Decisions are pure functions of the state and the command.
//
// Each command type has a consumer of its own, so a compensation can be
// handled before the action it undoes: a payment timeout's refund before
// the charge it races, a release before the reservation. Undoing nothing
// would let the late action through, leaving money taken or units set
// aside for a cancelled order; so an early undo is recorded (voided), and
// the late action is refused.
func CommandHandlers(store events.Store) []cqrs.CommandHandler {
	byOrder := func(id string) string { return OrderStream(id) }
	return []cqrs.CommandHandler{
		command.Handle("reserve-stock", store, inventoryAggregate, func(c ReserveStock) string { return StockStream(c.SKU) },
			func(_ context.Context, inv Inventory, c ReserveStock) ([]any, error) {
				if _, done := inv.Reserved[c.OrderID]; done {
					return nil, nil
				}
				if inv.Voided[c.OrderID] {
					return nil, command.Reject("the order's stock was released before it was reserved")
				}
				if inv.OnHand < c.Qty {
					return nil, command.Reject(fmt.Sprintf("out of stock: %d of %s left, %d ordered", inv.OnHand, c.SKU, c.Qty))
				}
				return []any{StockReserved(c)}, nil
			}),
		command.Handle("release-stock", store, inventoryAggregate, func(c ReleaseStock) string { return StockStream(c.SKU) },
			func(_ context.Context, inv Inventory, c ReleaseStock) ([]any, error) {
				qty, ok := inv.Reserved[c.OrderID]
				switch {
				case inv.Voided[c.OrderID]:
					return nil, nil
				case !ok:
					// Nothing reserved yet: make sure nothing will be.
					return []any{StockReservationVoided(c)}, nil
				}
				return []any{StockReleased{OrderID: c.OrderID, SKU: c.SKU, Qty: qty}}, nil
			}),
		command.Handle("charge-payment", store, paymentAggregate, func(c ChargePayment) string { return PaymentStream(c.OrderID) },
			func(_ context.Context, p Payment, c ChargePayment) ([]any, error) {
				switch {
				case p.Charged > 0:
					return nil, nil
				case p.Voided:
					return nil, command.Reject("the payment was refunded before it was charged")
				case c.CardToken == "":
					return nil, command.Reject("no card to charge")
				case c.CardToken == TokenDeclined:
					return nil, command.Reject("card declined")
				case c.CardToken == TokenNoAnswer:
					return nil, nil // the gateway never answers
				}
				return []any{PaymentCharged{OrderID: c.OrderID, CustomerID: c.CustomerID, Cents: c.Cents}}, nil
			}),
		command.Handle("refund-payment", store, paymentAggregate, func(c RefundPayment) string { return PaymentStream(c.OrderID) },
			func(_ context.Context, p Payment, c RefundPayment) ([]any, error) {
				switch {
				case p.Refunded || p.Voided:
					return nil, nil // once
				case p.Charged == 0:
					// Nothing charged yet: make sure nothing will be.
					return []any{PaymentVoided(c)}, nil
				}
				return []any{PaymentRefunded{OrderID: c.OrderID, CustomerID: p.CustomerID, Cents: p.Charged}}, nil
			}),
		command.Handle("confirm-order", store, orderAggregate, func(c ConfirmOrder) string { return byOrder(c.OrderID) },
			func(_ context.Context, o Order, c ConfirmOrder) ([]any, error) {
				if o.Status != StatusPending {
					return nil, nil
				}
				return []any{OrderConfirmed{OrderID: c.OrderID, CustomerID: o.CustomerID, Cents: o.Cents}}, nil
			}),
		command.Handle("cancel-order", store, orderAggregate, func(c CancelOrder) string { return byOrder(c.OrderID) },
			func(_ context.Context, o Order, c CancelOrder) ([]any, error) {
				if o.Status != StatusPending {
					return nil, nil
				}
				return []any{OrderCancelled{OrderID: c.OrderID, CustomerID: o.CustomerID, Reason: c.Reason}}, nil
			}),
	}
}

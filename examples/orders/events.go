package orders

import (
	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
)

// Events of the Order aggregate (stream OrderStream(id)).
type (
	// OrderPlaced starts an order and its fulfilment saga. It holds the
	// payment provider's token for the card, never the number (cards.go).
	OrderPlaced struct {
		OrderID    string `json:"order_id"`
		CustomerID string `json:"customer_id"`
		SKU        string `json:"sku"`
		Qty        int    `json:"qty"`
		Cents      int64  `json:"cents"`
		CardToken  string `json:"card_token"`
		CardLast4  string `json:"card_last4"`
	}
	// OrderConfirmed closes an order that was reserved and paid.
	OrderConfirmed struct {
		OrderID    string `json:"order_id"`
		CustomerID string `json:"customer_id"`
		Cents      int64  `json:"cents"`
	}
	// OrderCancelled closes an order that could not be fulfilled.
	OrderCancelled struct {
		OrderID    string `json:"order_id"`
		CustomerID string `json:"customer_id"`
		Reason     string `json:"reason"`
	}
)

// Events of the Inventory aggregate (stream StockStream(sku)).
type (
	// StockAdded puts units of a SKU on the shelf.
	StockAdded struct {
		SKU string `json:"sku"`
		Qty int    `json:"qty"`
	}
	// StockReserved sets units aside for an order.
	StockReserved struct {
		OrderID string `json:"order_id"`
		SKU     string `json:"sku"`
		Qty     int    `json:"qty"`
	}
	// StockReleased returns an order's reserved units to the shelf.
	StockReleased struct {
		OrderID string `json:"order_id"`
		SKU     string `json:"sku"`
		Qty     int    `json:"qty"`
	}
	// StockReservationVoided records a release that came before the
	// order's reservation: the reservation, if it comes, is refused, so
	// no units stay set aside for a cancelled order.
	StockReservationVoided struct {
		OrderID string `json:"order_id"`
		SKU     string `json:"sku"`
	}
)

// Events of the Payment aggregate (stream PaymentStream(orderID)).
type (
	// PaymentCharged records money taken for an order.
	PaymentCharged struct {
		OrderID    string `json:"order_id"`
		CustomerID string `json:"customer_id"`
		Cents      int64  `json:"cents"`
	}
	// PaymentRefunded records money given back.
	PaymentRefunded struct {
		OrderID    string `json:"order_id"`
		CustomerID string `json:"customer_id"`
		Cents      int64  `json:"cents"`
	}
	// PaymentVoided records a refund that came before the charge: the
	// charge, if it comes, is refused, so no money is taken for a
	// cancelled order.
	PaymentVoided struct {
		OrderID string `json:"order_id"`
	}
)

// Commands the fulfilment saga sends; each has one handler (handlers.go).
type (
	ReserveStock struct {
		OrderID string `json:"order_id"`
		SKU     string `json:"sku"`
		Qty     int    `json:"qty"`
	}
	ReleaseStock struct {
		OrderID string `json:"order_id"`
		SKU     string `json:"sku"`
	}
	ChargePayment struct {
		OrderID    string `json:"order_id"`
		CustomerID string `json:"customer_id"`
		Cents      int64  `json:"cents"`
		CardToken  string `json:"card_token"`
	}
	RefundPayment struct {
		OrderID string `json:"order_id"`
	}
	ConfirmOrder struct {
		OrderID string `json:"order_id"`
	}
	CancelOrder struct {
		OrderID string `json:"order_id"`
		Reason  string `json:"reason"`
	}
)

// Stored type names of the commands whose rejections the saga handles.
const (
	ReserveStockType  = "inventory.reserve_stock"
	ChargePaymentType = "payments.charge_payment"
)

// Register registers the domain's events and commands under their stable
// stored names, and command.Rejected. Call it on the registry the store is
// built with.
func Register(reg *events.Registry) error {
	// v1 of OrderPlaced and ChargePayment held the card number (cards.go).
	events.RegisterVersioned[OrderPlaced](reg, "orders.order_placed", 2, events.Upcaster{From: 1, Func: upcastCardNumber(true)})
	events.Register[OrderConfirmed](reg, "orders.order_confirmed")
	events.Register[OrderCancelled](reg, "orders.order_cancelled")
	events.Register[StockAdded](reg, "inventory.stock_added")
	events.Register[StockReserved](reg, "inventory.stock_reserved")
	events.Register[StockReleased](reg, "inventory.stock_released")
	events.Register[PaymentCharged](reg, "payments.payment_charged")
	events.Register[PaymentRefunded](reg, "payments.payment_refunded")
	events.Register[PaymentVoided](reg, "payments.payment_voided")
	events.Register[StockReservationVoided](reg, "inventory.stock_reservation_voided")
	events.Register[ReserveStock](reg, ReserveStockType)
	events.Register[ReleaseStock](reg, "inventory.release_stock")
	events.RegisterVersioned[ChargePayment](reg, ChargePaymentType, 2, events.Upcaster{From: 1, Func: upcastCardNumber(false)})
	events.Register[RefundPayment](reg, "payments.refund_payment")
	events.Register[ConfirmOrder](reg, "orders.confirm_order")
	events.Register[CancelOrder](reg, "orders.cancel_order")
	return command.Register(reg)
}

// NewRegistry returns a registry with the domain's types.
func NewRegistry() *events.Registry {
	reg := events.NewRegistry()
	if err := Register(reg); err != nil {
		panic(err) // a fresh registry cannot hold a conflicting name
	}
	return reg
}

// Prefixes of the stream ids derived from an order id: the longest bounds
// the order id (MaxOrderIDLength).
const (
	orderStreamPrefix   = "order-"
	paymentStreamPrefix = "payment-"
)

// stockStreamPrefix begins the stream id of a SKU's inventory.
const stockStreamPrefix = "stock-"

// OrderStream is the stream of one order.
func OrderStream(orderID string) string { return orderStreamPrefix + orderID }

// StockStream is the stream of one SKU's inventory.
func StockStream(sku string) string { return stockStreamPrefix + sku }

// PaymentStream is the stream of one order's payment.
func PaymentStream(orderID string) string { return paymentStreamPrefix + orderID }

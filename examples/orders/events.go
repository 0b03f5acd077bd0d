package orders

import "github.com/converge-es/converge/events"

// OrderPlaced starts an order.
type OrderPlaced struct {
	OrderID     string `json:"order_id"`
	CustomerID  string `json:"customer_id"`
	AmountCents int64  `json:"amount_cents"`
}

// PaymentCaptured records money taken for an order.
type PaymentCaptured struct {
	OrderID     string `json:"order_id"`
	AmountCents int64  `json:"amount_cents"`
}

// PaymentDeclined records a refused payment; the order is cancelled.
type PaymentDeclined struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}

// OrderPaid and OrderCancelled close an order.
type (
	OrderPaid struct {
		OrderID string `json:"order_id"`
	}
	OrderCancelled struct {
		OrderID string `json:"order_id"`
		Reason  string `json:"reason"`
	}
)

// Register registers the workflow's event types under their stable names.
func Register(reg *events.Registry) {
	events.Register[OrderPlaced](reg, "orders.order_placed")
	events.Register[PaymentCaptured](reg, "payments.payment_captured")
	events.Register[PaymentDeclined](reg, "payments.payment_declined")
	events.Register[OrderPaid](reg, "orders.order_paid")
	events.Register[OrderCancelled](reg, "orders.order_cancelled")
}

// OrderStream is the stream of one order.
func OrderStream(orderID string) string { return "order-" + orderID }

// PaymentStream is the stream of one order's payment.
func PaymentStream(orderID string) string { return "payment-" + orderID }

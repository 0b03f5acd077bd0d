package orders

import (
	"context"
	"time"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// Read model names: they are also the names to wait on.
const (
	// OrderSummary is user-facing: a person reloads a page after placing
	// an order. Eventual, 2s SLA. The saga's credit check reads it.
	OrderSummary = "order_summary"
	// CustomerSpending is analytics: nobody waits on it. Eventual, 30s SLA.
	CustomerSpending = "customer_spending"
	// CustomerOrders is strong: applied in the append's own unit of work,
	// so a customer's order list includes an order the moment Place
	// returns.
	CustomerOrders = "customer_orders"
)

// Tables of each read model, for comparing one with a clean rebuild.
var Tables = map[string][]string{
	OrderSummary:     {"orders", "customers"},
	CustomerSpending: {"customers"},
	CustomerOrders:   {"orders"},
}

// Order statuses as the order summary shows them.
const (
	StatusPending   = "pending"
	StatusConfirmed = "confirmed"
	StatusCancelled = "cancelled"
)

// Summary is a row of order_summary's "orders" table.
type Summary struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	SKU        string `json:"sku"`
	Qty        int    `json:"qty"`
	Cents      int64  `json:"cents"`
	Status     string `json:"status"`
	Reason     string `json:"reason,omitempty"`
}

// Terminal reports whether the order is closed.
func (s Summary) Terminal() bool { return s.Status == StatusConfirmed || s.Status == StatusCancelled }

// CustomerTotals is a row of order_summary's "customers" table.
type CustomerTotals struct {
	OpenOrders     int   `json:"open_orders"`
	OpenCents      int64 `json:"open_cents"`
	ConfirmedCents int64 `json:"confirmed_cents"`
}

// Spending is a row of customer_spending's "customers" table.
type Spending struct {
	ChargedCents  int64 `json:"charged_cents"`
	RefundedCents int64 `json:"refunded_cents"`
	Payments      int   `json:"payments"`
	Refunds       int   `json:"refunds"`
}

// CustomerOrder is a row of customer_orders' "orders" table, keyed
// "customer/order".
type CustomerOrder struct {
	OrderID string `json:"order_id"`
	Cents   int64  `json:"cents"`
}

// CustomerOrderKey is the key of an order in customer_orders.
func CustomerOrderKey(customerID, orderID string) string { return customerID + "/" + orderID }

// Projections returns the read models' definitions.
func Projections() []*projections.Projection {
	return []*projections.Projection{orderSummary(), customerSpending(), customerOrders()}
}

func orderSummary() *projections.Projection {
	p := projections.New(OrderSummary, &projections.Config{
		Class: consistency.Eventual, SLA: 2 * time.Second,
		Description: "Each order with its status, and each customer's open and confirmed totals.",
	})
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderPlaced) error {
		if err := tx.Table("orders").Put(ctx, e.OrderID, Summary{
			OrderID: e.OrderID, CustomerID: e.CustomerID, SKU: e.SKU, Qty: e.Qty, Cents: e.Cents, Status: StatusPending,
		}); err != nil {
			return err
		}
		return updateTotals(ctx, tx, e.CustomerID, func(c *CustomerTotals) { c.OpenOrders++; c.OpenCents += e.Cents })
	})
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderConfirmed) error {
		return closeOrder(ctx, tx, e.OrderID, StatusConfirmed, "")
	})
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderCancelled) error {
		return closeOrder(ctx, tx, e.OrderID, StatusCancelled, e.Reason)
	})
	return p
}

func closeOrder(ctx context.Context, tx *projections.Tx, orderID, status, reason string) error {
	orders := tx.Table("orders")
	s, ok, err := projections.Get[Summary](ctx, orders, orderID)
	if err != nil || !ok || s.Terminal() {
		return err // the aggregate closes an order once; nothing to do otherwise
	}
	s.Status, s.Reason = status, reason
	if err := orders.Put(ctx, orderID, s); err != nil {
		return err
	}
	return updateTotals(ctx, tx, s.CustomerID, func(c *CustomerTotals) {
		c.OpenOrders--
		c.OpenCents -= s.Cents
		if status == StatusConfirmed {
			c.ConfirmedCents += s.Cents
		}
	})
}

func updateTotals(ctx context.Context, tx *projections.Tx, customerID string, fn func(*CustomerTotals)) error {
	t := tx.Table("customers")
	c, _, err := projections.Get[CustomerTotals](ctx, t, customerID)
	if err != nil {
		return err
	}
	fn(&c)
	return t.Put(ctx, customerID, c)
}

func customerSpending() *projections.Projection {
	p := projections.New(CustomerSpending, &projections.Config{
		Class: consistency.Eventual, SLA: 30 * time.Second,
		Description: "Money charged and refunded per customer, for reports.",
	})
	update := func(ctx context.Context, tx *projections.Tx, customerID string, fn func(*Spending)) error {
		t := tx.Table("customers")
		s, _, err := projections.Get[Spending](ctx, t, customerID)
		if err != nil {
			return err
		}
		fn(&s)
		return t.Put(ctx, customerID, s)
	}
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e PaymentCharged) error {
		return update(ctx, tx, e.CustomerID, func(s *Spending) { s.ChargedCents += e.Cents; s.Payments++ })
	})
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e PaymentRefunded) error {
		return update(ctx, tx, e.CustomerID, func(s *Spending) { s.RefundedCents += e.Cents; s.Refunds++ })
	})
	return p
}

func customerOrders() *projections.Projection {
	p := projections.New(CustomerOrders, &projections.Config{
		Class:       consistency.Strong,
		Description: "Each customer's orders, readable the moment an order is placed.",
	})
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderPlaced) error {
		return tx.Table("orders").Put(ctx, CustomerOrderKey(e.CustomerID, e.OrderID), CustomerOrder{OrderID: e.OrderID, Cents: e.Cents})
	})
	return p
}

package orders

import (
	"context"
	"fmt"
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
	OrderSummary:     {"orders", "customers", "open"},
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
	// Seq numbers the order among its customer's (CustomerTotals.Placed).
	Seq int64 `json:"seq,omitempty"`
}

// Terminal reports whether the order is closed.
func (s Summary) Terminal() bool { return s.Status == StatusConfirmed || s.Status == StatusCancelled }

// CustomerTotals is a row of order_summary's "customers" table.
type CustomerTotals struct {
	OpenOrders     int   `json:"open_orders"`
	OpenCents      int64 `json:"open_cents"`
	ConfirmedCents int64 `json:"confirmed_cents"`
	// Placed counts the customer's orders: the model numbers each
	// (Summary.Seq) in the order it applies them, the feed's.
	Placed int64 `json:"placed,omitempty"`
}

// OpenOrder is a row of order_summary's "open" table: a customer's order
// still open, keyed OpenOrderKey, so a customer's open orders list in the
// order they were placed.
type OpenOrder struct {
	OrderID string `json:"order_id"`
	Cents   int64  `json:"cents"`
}

// OpenOrderKey is the key in order_summary's "open" table of the
// customer's seq-th order.
func OpenOrderKey(customerID string, seq int64) string {
	return fmt.Sprintf("%s/%020d", customerID, seq)
}

// openThrough returns what the customer's open orders placed up to its
// seq-th, that one included, add up to, as order_summary's "open" table
// has them. It reads none placed later, and stops reading once the sum is
// over most: the sum it then returns is over most, though not all of it.
func openThrough(ctx context.Context, open projections.Reader, customerID string, seq, most int64) (int64, error) {
	prefix, last := customerID+"/", OpenOrderKey(customerID, seq)
	var sum int64
	opts := &projections.ListOptions{Prefix: prefix, Limit: 100}
	for {
		rows, err := open.List(ctx, opts)
		if err != nil {
			return 0, err
		}
		for _, r := range rows {
			if r.Key > last {
				return sum, nil
			}
			var o OpenOrder
			if err := r.Decode(&o); err != nil {
				return 0, err
			}
			if sum += o.Cents; sum > most {
				return sum, nil
			}
		}
		if len(rows) < opts.Limit {
			return sum, nil
		}
		opts.After = rows[len(rows)-1].Key
	}
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
		var seq int64
		if err := updateTotals(ctx, tx, e.CustomerID, func(c *CustomerTotals) {
			c.OpenOrders++
			c.OpenCents += e.Cents
			c.Placed++
			seq = c.Placed
		}); err != nil {
			return err
		}
		if err := tx.Table("open").Put(ctx, OpenOrderKey(e.CustomerID, seq), OpenOrder{OrderID: e.OrderID, Cents: e.Cents}); err != nil {
			return err
		}
		return tx.Table("orders").Put(ctx, e.OrderID, Summary{
			OrderID: e.OrderID, CustomerID: e.CustomerID, SKU: e.SKU, Qty: e.Qty, Cents: e.Cents, Status: StatusPending, Seq: seq,
		})
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
	if s.Seq > 0 { // 0: placed before the model numbered orders, not in open
		if err := tx.Table("open").Delete(ctx, OpenOrderKey(s.CustomerID, s.Seq)); err != nil {
			return err
		}
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

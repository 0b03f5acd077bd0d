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
	OrderSummary   = "order_summary"
	CustomerOrders = "customer_orders"
)

// Summary is a row of the order_summary read model.
type Summary struct {
	OrderID     string `json:"order_id"`
	CustomerID  string `json:"customer_id"`
	AmountCents int64  `json:"amount_cents"`
	Status      string `json:"status"`
	Reason      string `json:"reason,omitempty"`
}

// Order statuses.
const (
	StatusPlaced    = "placed"
	StatusPaid      = "paid"
	StatusCancelled = "cancelled"
)

// NewOrderSummary is the eventually consistent order_summary projection:
// one row per order, fed by the global feed.
func NewOrderSummary() *projections.Projection {
	p := projections.New(OrderSummary, &projections.Config{
		Class:       consistency.Eventual,
		SLA:         2 * time.Second,
		Description: "One row per order with its amount and status.",
	})
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderPlaced) error {
		return tx.Table("orders").Put(ctx, e.OrderID, Summary{OrderID: e.OrderID, CustomerID: e.CustomerID, AmountCents: e.AmountCents, Status: StatusPlaced})
	})
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderPaid) error {
		return setStatus(ctx, tx, e.OrderID, StatusPaid, "")
	})
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderCancelled) error {
		return setStatus(ctx, tx, e.OrderID, StatusCancelled, e.Reason)
	})
	return p
}

func setStatus(ctx context.Context, tx *projections.Tx, orderID, status, reason string) error {
	t := tx.Table("orders")
	s, ok, err := projections.Get[Summary](ctx, t, orderID)
	if err != nil || !ok {
		return err // an order we never saw placed: nothing to update
	}
	s.Status, s.Reason = status, reason
	return t.Put(ctx, orderID, s)
}

// CustomerCount is a row of the customer_orders read model.
type CustomerCount struct {
	Orders int `json:"orders"`
}

// NewCustomerOrders is the strongly consistent customer_orders projection:
// applied inside the append's own unit of work, by the append hook a
// running projections.Runner installs on the store, so a read right after
// placing an order sees it.
func NewCustomerOrders() *projections.Projection {
	p := projections.New(CustomerOrders, &projections.Config{
		Class:       consistency.Strong,
		Description: "How many orders each customer placed.",
	})
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e OrderPlaced) error {
		t := tx.Table("customers")
		c, _, err := projections.Get[CustomerCount](ctx, t, e.CustomerID)
		if err != nil {
			return err
		}
		c.Orders++
		return t.Put(ctx, e.CustomerID, c)
	})
	return p
}

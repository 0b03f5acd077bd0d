package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
)

// The order workflow the tests run: place → reserve stock → charge payment
// → ship, with a payment timeout and compensations.

type OrderPlaced struct {
	OrderID string `json:"order_id"`
	Total   int    `json:"total"`
}
type StockReserved struct {
	OrderID string `json:"order_id"`
}
type PaymentCharged struct {
	OrderID string `json:"order_id"`
}
type PaymentDeclined struct {
	OrderID string `json:"order_id"`
	Reason  string `json:"reason"`
}
type Ping struct {
	OrderID string `json:"order_id"`
	N       int    `json:"n"`
}

type ReserveStock struct {
	OrderID string `json:"order_id"`
}
type ChargePayment struct {
	OrderID string `json:"order_id"`
	Amount  int    `json:"amount"`
}
type ShipOrder struct {
	OrderID string `json:"order_id"`
}
type ReleaseStock struct {
	OrderID string `json:"order_id"`
}
type NotifyCustomer struct {
	OrderID string `json:"order_id"`
	Text    string `json:"text"`
}

func registry() *events.Registry {
	reg := events.NewRegistry()
	events.Register[OrderPlaced](reg, "order.placed")
	events.Register[StockReserved](reg, "stock.reserved")
	events.Register[PaymentCharged](reg, "payment.charged")
	events.Register[PaymentDeclined](reg, "payment.declined")
	events.Register[Ping](reg, "order.ping")
	events.Register[ReserveStock](reg, "stock.reserve")
	events.Register[ChargePayment](reg, "payment.charge")
	events.Register[ShipOrder](reg, "order.ship")
	events.Register[ReleaseStock](reg, "stock.release")
	events.Register[NotifyCustomer](reg, "customer.notify")
	if err := command.Register(reg); err != nil {
		panic(err)
	}
	return reg
}

const orders = "order_fulfilment"

type orderState struct {
	OrderID string `json:"order_id"`
	Total   int    `json:"total"`
	Pings   []int  `json:"pings,omitempty"`
}

func byOrder[E interface{ order() string }](e E, _ events.Envelope) string { return e.order() }

func (e OrderPlaced) order() string     { return e.OrderID }
func (e StockReserved) order() string   { return e.OrderID }
func (e PaymentCharged) order() string  { return e.OrderID }
func (e PaymentDeclined) order() string { return e.OrderID }
func (e Ping) order() string            { return e.OrderID }

// summaryModel is the read model the gated step reads: order totals.
const summaryModel = "order_summary"

func applySummary(ctx context.Context, rows feed.Rows, env events.Envelope) error {
	if env.Type != "order.placed" {
		return nil
	}
	var e OrderPlaced
	if err := json.Unmarshal(env.Payload, &e); err != nil {
		return err
	}
	b, _ := json.Marshal(e.Total)
	return rows.Put(ctx, "model."+summaryModel, "totals", e.OrderID, b, env.Token)
}

// orderSaga defines the order workflow. With gated, the stock-reserved
// step reads the order total from the summary read model instead of its
// own state, through the step's unit: a read through the store's rows
// would take a second connection while the step holds one.
func orderSaga(gated bool) *saga.Saga[orderState] {
	s := saga.New[orderState](orders, &saga.Config[orderState]{MaxAttempts: 3})
	saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
		st.State().OrderID, st.State().Total = e.OrderID, e.Total
		st.Schedule("payment", 30*time.Minute)
		if err := st.Compensate(NotifyCustomer{OrderID: e.OrderID, Text: "order cancelled"}); err != nil {
			return err
		}
		return st.Send(ReserveStock{OrderID: e.OrderID})
	})
	var opts []saga.Option
	if gated {
		opts = append(opts, saga.Reads(summaryModel))
	}
	saga.On(s, byOrder[StockReserved], func(st *saga.Step[orderState], e StockReserved) error {
		amount := st.State().Total
		if gated {
			eu, _ := events.UnitFromContext(st.Context())
			u, ok := eu.(feed.Unit)
			if !ok {
				return saga.Permanent(errors.New("the step's context carries no unit"))
			}
			row, ok, err := u.Rows().Get(st.Context(), "model."+summaryModel, "totals", e.OrderID, feed.LockNone)
			if err != nil {
				return err
			}
			if !ok {
				return saga.Permanent(fmt.Errorf("order %s is not in the summary: the step ran on stale data", e.OrderID))
			}
			if err := json.Unmarshal(row.Value, &amount); err != nil {
				return err
			}
		}
		if err := st.Compensate(ReleaseStock(e)); err != nil {
			return err
		}
		return st.Send(ChargePayment{OrderID: e.OrderID, Amount: amount})
	}, opts...)
	saga.On(s, byOrder[PaymentCharged], func(st *saga.Step[orderState], e PaymentCharged) error {
		st.Cancel("payment")
		st.Complete()
		return st.Send(ShipOrder(e))
	})
	saga.On(s, byOrder[PaymentDeclined], func(st *saga.Step[orderState], e PaymentDeclined) error {
		st.Cancel("payment")
		st.RunCompensations()
		st.Fail("payment declined: " + e.Reason)
		return nil
	})
	saga.On(s, byOrder[Ping], func(st *saga.Step[orderState], e Ping) error {
		if e.N < 0 {
			st.Schedule("payment", time.Hour) // postpone
			return nil
		}
		st.State().Pings = append(st.State().Pings, e.N)
		return nil
	})
	saga.On(s, func(_ command.Rejected, env events.Envelope) string { return env.Metadata.CorrelationID },
		func(st *saga.Step[orderState], e command.Rejected) error {
			st.Cancel("payment")
			st.RunCompensations()
			st.Fail(e.Type + " rejected: " + e.Reason)
			return nil
		})
	saga.OnTimeout(s, "payment", func(st *saga.Step[orderState], _ saga.Timeout) error {
		st.RunCompensations()
		st.Fail("payment timed out")
		return nil
	})
	return s
}

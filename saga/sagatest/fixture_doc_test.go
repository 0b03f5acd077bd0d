package sagatest_test

import (
	"testing"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// The order workflow of the package documentation's fixture: placing an
// order reserves stock, with the stock's release as its compensation; a
// declined payment runs the compensation and fails the instance.
type (
	OrderPlaced struct {
		OrderID string `json:"order_id"`
		Total   int    `json:"total"`
	}
	PaymentDeclined struct {
		OrderID string `json:"order_id"`
	}
	ReserveStock struct {
		OrderID string `json:"order_id"`
	}
	ReleaseStock struct {
		OrderID string `json:"order_id"`
	}
	Order struct {
		Total int `json:"total"`
	}
)

func orderRegistry() *events.Registry {
	reg := events.NewRegistry()
	events.Register[OrderPlaced](reg, "order.placed")
	events.Register[PaymentDeclined](reg, "payment.declined")
	events.Register[ReserveStock](reg, "stock.reserve")
	events.Register[ReleaseStock](reg, "stock.release")
	return reg
}

func orderFulfilment() *saga.Saga[Order] {
	s := saga.New[Order]("order_fulfilment", nil)
	saga.StartOn(s, func(e OrderPlaced, _ events.Envelope) string { return e.OrderID },
		func(st *saga.Step[Order], e OrderPlaced) error {
			st.State().Total = e.Total
			if err := st.Compensate(ReleaseStock{OrderID: e.OrderID}); err != nil {
				return err
			}
			return st.Send(ReserveStock{OrderID: e.OrderID})
		})
	saga.On(s, func(e PaymentDeclined, _ events.Envelope) string { return e.OrderID },
		func(st *saga.Step[Order], _ PaymentDeclined) error {
			st.RunCompensations()
			st.Fail("payment declined")
			return nil
		})
	return s
}

// TestFixtureDeclinedPayment is the package documentation's fixture
// example: the stock reserved when the order was placed is released when
// its payment is declined, and the instance fails.
func TestFixtureDeclinedPayment(t *testing.T) {
	t.Parallel()
	reg, orders := orderRegistry(), orderFulfilment()

	fx := sagatest.New(t, &sagatest.Config{Registry: reg, Sagas: []saga.Definition{orders}})
	fx.Given(sagatest.Event{Stream: "order-1", Data: OrderPlaced{OrderID: "1", Total: 30}})
	fx.When(sagatest.Event{Stream: "order-1", Data: PaymentDeclined{OrderID: "1"}})
	fx.ExpectCommands(ReleaseStock{OrderID: "1"})
	fx.ExpectStatus("order_fulfilment", "1", saga.StatusFailed)
}

package orders

import (
	"encoding/json"
	"fmt"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
	"github.com/converge-es/converge/saga"
)

// Fulfilment is the saga type's stored name.
const Fulfilment = "order_fulfilment"

// Outcomes of a fulfilment, kept in its state.
const (
	OutcomeConfirmed     = "confirmed"
	OutcomeCreditRefused = "credit_refused"
	OutcomeOutOfStock    = "out_of_stock"
	OutcomeDeclined      = "declined"
	OutcomeTimedOut      = "timed_out"
	// OutcomeCancelled: an operator cancelled the order's fulfilment.
	OutcomeCancelled = "cancelled"
)

// FulfilmentState is an order's fulfilment saga state.
type FulfilmentState struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	SKU        string `json:"sku"`
	Qty        int    `json:"qty"`
	Cents      int64  `json:"cents"`
	// CardToken and CardLast4 are the payment provider's token for the
	// card and its last digits (Tokenize): never the number.
	CardToken string `json:"card_token"`
	CardLast4 string `json:"card_last4"`
	// ConfirmedBefore is the customer's confirmed total the credit check
	// read in order_summary.
	ConfirmedBefore int64  `json:"confirmed_before"`
	Outcome         string `json:"outcome,omitempty"`
	Reason          string `json:"reason,omitempty"`
	// StockAsked and PaymentAsked record that ReserveStock and
	// ChargePayment were sent: a cancel undoes them even while their
	// answers are on their way.
	StockAsked   bool `json:"stock_asked,omitempty"`
	PaymentAsked bool `json:"payment_asked,omitempty"`
}

// fulfilment defines the order-fulfilment saga: placed → credit check
// (reads order_summary through the gate) → reserve stock → charge payment
// → confirm. A refused credit check or an out-of-stock reservation cancels
// the order; a declined or unanswered payment releases the stock, refunds
// whatever was charged and cancels the order.
func (a *App) fulfilment() *saga.Saga[FulfilmentState] {
	f := saga.New[FulfilmentState](Fulfilment, &saga.Config[FulfilmentState]{
		Description: "Reserve stock, charge the card and confirm each order; compensate on failure.",
		StuckAfter:  a.cfg.StuckAfter,
		// v1 held the card number (cards.go).
		StateVersion: 2,
		Upcast:       map[int]func(json.RawMessage) (json.RawMessage, error){1: upcastCardNumber(true)},
	})
	byOrder := func(id string) string { return id }
	saga.StartOn(f, func(e OrderPlaced, _ events.Envelope) string { return byOrder(e.OrderID) },
		func(s *saga.Step[FulfilmentState], e OrderPlaced) error {
			st := s.State()
			st.OrderID, st.CustomerID, st.SKU, st.Qty, st.Cents = e.OrderID, e.CustomerID, e.SKU, e.Qty, e.Cents
			st.CardToken, st.CardLast4 = e.CardToken, e.CardLast4
			// The gate guarantees order_summary has applied this order
			// and everything the customer did before it.
			view := a.client.Projections().View(OrderSummary)
			summary, ok, err := projections.Get[Summary](s.Context(), view.Table("orders"), e.OrderID)
			if err != nil {
				return err
			} else if !ok {
				return fmt.Errorf("orders: %s is missing order %s after its gate", OrderSummary, e.OrderID)
			}
			totals, _, err := projections.Get[CustomerTotals](s.Context(), view.Table("customers"), e.CustomerID)
			if err != nil {
				return err
			}
			// Open orders placed before this one count too: two orders
			// placed before either is confirmed must not both pass on the
			// confirmed sum. Orders placed after it do not: the summary
			// may have them by now, and counting them would refuse an order
			// that fits for the sake of a later one (which its own check
			// refuses instead).
			limit, confirmed := a.cfg.CreditLimitCents, totals.ConfirmedCents
			open := totals.OpenCents // this order's and every other open one's, later ones too
			switch {
			case confirmed+open <= limit, confirmed+e.Cents > limit:
				// Decided without knowing which came first.
			case summary.Seq == 0:
				// Placed before the model numbered orders: all open ones count.
			default:
				if open, err = openThrough(s.Context(), view.Table("open"), e.CustomerID, summary.Seq, limit-confirmed); err != nil {
					return err
				}
			}
			st.ConfirmedBefore = confirmed
			if confirmed+open > limit {
				return end(s, OutcomeCreditRefused, fmt.Sprintf("credit limit: %d cents confirmed and the open orders placed up to this one (its %d cents included) exceed %d",
					confirmed, e.Cents, limit))
			}
			st.StockAsked = true
			return s.Send(ReserveStock{OrderID: e.OrderID, SKU: e.SKU, Qty: e.Qty})
		}, saga.Reads(OrderSummary))

	saga.On(f, func(e StockReserved, _ events.Envelope) string { return byOrder(e.OrderID) },
		func(s *saga.Step[FulfilmentState], e StockReserved) error {
			st := s.State()
			if err := s.Compensate(ReleaseStock{OrderID: e.OrderID, SKU: e.SKU}); err != nil {
				return err
			}
			s.Schedule("payment", a.cfg.PaymentTimeout)
			st.PaymentAsked = true
			return s.Send(ChargePayment{OrderID: st.OrderID, CustomerID: st.CustomerID, Cents: st.Cents, CardToken: st.CardToken})
		})

	saga.On(f, func(_ command.Rejected, env events.Envelope) string { return env.Metadata.CorrelationID },
		func(s *saga.Step[FulfilmentState], r command.Rejected) error {
			switch r.Type {
			case ReserveStockType:
				return end(s, OutcomeOutOfStock, r.Reason)
			case ChargePaymentType:
				s.Cancel("payment")
				s.RunCompensations() // release the stock
				return end(s, OutcomeDeclined, "payment declined: "+r.Reason)
			}
			return saga.Permanent(fmt.Errorf("orders: unexpected rejection of %s: %s", r.Type, r.Reason))
		})

	saga.On(f, func(e PaymentCharged, _ events.Envelope) string { return byOrder(e.OrderID) },
		func(s *saga.Step[FulfilmentState], e PaymentCharged) error {
			s.Cancel("payment")
			s.State().Outcome = OutcomeConfirmed
			s.Complete()
			return s.Send(ConfirmOrder{OrderID: e.OrderID})
		})

	saga.OnTimeout(f, "payment", func(s *saga.Step[FulfilmentState], _ saga.Timeout) error {
		s.RunCompensations() // release the stock
		// The gateway may still have charged the card: refund whatever
		// was charged (the Payment aggregate refunds nothing otherwise).
		if err := s.Send(RefundPayment{OrderID: s.State().OrderID}); err != nil {
			return err
		}
		return end(s, OutcomeTimedOut, "payment timed out")
	})

	// An operator's cancel (the dashboard, `converge sagas cancel`) undoes
	// what the fulfilment asked for, in the cancel's unit: a release and a
	// refund void a reservation or a charge still on its way (the
	// Inventory and Payment aggregates refuse them later) and undo one
	// made; the order is cancelled.
	saga.OnCancel(f, func(s *saga.Step[FulfilmentState], c saga.Cancelled) error {
		st := s.State() // empty when the first step has not run (parked)
		s.Cancel("payment")
		if st.StockAsked {
			if err := s.Send(ReleaseStock{OrderID: s.ID(), SKU: st.SKU}); err != nil {
				return err
			}
		}
		if st.PaymentAsked {
			if err := s.Send(RefundPayment{OrderID: s.ID()}); err != nil {
				return err
			}
		}
		st.Outcome, st.Reason = OutcomeCancelled, c.Reason
		return s.Send(CancelOrder{OrderID: s.ID(), Reason: c.Reason})
	})
	return f
}

// end cancels the order with reason and ends the saga as failed with it.
func end(s *saga.Step[FulfilmentState], outcome, reason string) error {
	st := s.State()
	st.Outcome, st.Reason = outcome, reason
	s.Fail(reason)
	return s.Send(CancelOrder{OrderID: st.OrderID, Reason: reason})
}

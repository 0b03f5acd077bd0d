package orders

import (
	"context"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

// PaymentsConsumer is the feed consumer name of the payment step.
const PaymentsConsumer = "payments"

// DeclineAboveCents is the demo's payment rule: larger orders are declined.
const DeclineAboveCents = 100_000

// ErrStaleRead is returned (and the event retried) when the payment step
// would otherwise decide on a read model that has not caught up.
var ErrStaleRead = errors.New("orders: read model is behind the event being handled")

// eventIDs is the namespace of the payment step's deterministic event ids.
var eventIDs = uuid.MustParse("6f1d4c1e-8a53-4c0f-9a2a-6c1b8f3a2d10")

// Payments is the payment step of the workflow: for every placed order it
// reads the order's summary, waiting until that read model reflects the
// order (it never decides on a stale read), captures or declines the
// payment, and closes the order.
//
// Its events have ids derived from the order event's id, so handling an
// order twice appends nothing twice. They are appended through the
// consumer's unit of work, committing together with its checkpoint.
type Payments struct {
	Store   events.Store
	Tracker *consistency.Tracker
	// Summaries returns the order_summary view of the running projections.
	Summaries func() *projections.View
}

// Handle is a Watermill handler for the payments consumer.
func (p *Payments) Handle(msg *message.Message) error {
	ctx := msg.Context()
	env, err := feed.EnvelopeFromMessage(msg)
	if err != nil {
		return err
	}
	if env.Type != "orders.order_placed" {
		return nil
	}
	placed, err := events.DecodeAs[OrderPlaced](p.Store.Registry(), env)
	if err != nil {
		return err
	}
	// The feed hands the handler its unit of work in ctx, but nothing has
	// used it yet: no transaction, no reserved token, so waiting now holds
	// nothing back. The tracker refuses to wait with a unit in ctx
	// (consistency.ErrWaitInUnit), because after the unit's first write a
	// wait would stall the whole feed; this wait comes first, so it hides
	// the unit.
	st, err := p.Tracker.Wait(events.ContextWithUnit(ctx, nil), env.Token, OrderSummary)
	if err != nil {
		return err
	}
	if st.Stale {
		return fmt.Errorf("%w: %s is at %s, the order at %s", ErrStaleRead, OrderSummary, st.Checkpoint, env.Token)
	}
	summary, ok, err := projections.Get[Summary](ctx, p.Summaries().Table("orders"), placed.OrderID)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("orders: order %s missing from %s at %s", placed.OrderID, OrderSummary, st.Checkpoint)
	}

	meta := events.Metadata{CorrelationID: env.Metadata.CorrelationID, CausationID: env.ID}
	var payment, outcome events.Event
	if summary.AmountCents > DeclineAboveCents {
		reason := fmt.Sprintf("amount %d cents is over the %d limit", summary.AmountCents, DeclineAboveCents)
		payment = events.Event{ID: derivedID(env.ID, "declined"), Data: PaymentDeclined{OrderID: placed.OrderID, Reason: reason}, Metadata: meta}
		outcome = events.Event{ID: derivedID(env.ID, "cancelled"), Data: OrderCancelled{OrderID: placed.OrderID, Reason: reason}, Metadata: meta}
	} else {
		payment = events.Event{ID: derivedID(env.ID, "captured"), Data: PaymentCaptured{OrderID: placed.OrderID, AmountCents: summary.AmountCents}, Metadata: meta}
		outcome = events.Event{ID: derivedID(env.ID, "paid"), Data: OrderPaid{OrderID: placed.OrderID}, Metadata: meta}
	}
	if err := p.append(ctx, PaymentStream(placed.OrderID), payment); err != nil {
		return err
	}
	return p.append(ctx, OrderStream(placed.OrderID), outcome)
}

// append appends through the handler's unit, so the events commit with the
// consumer's checkpoint on either store, or not at all.
func (p *Payments) append(ctx context.Context, stream string, ev events.Event) error {
	store := p.Store
	if u, ok := events.UnitFromContext(ctx); ok {
		store = u
	}
	_, err := store.Append(ctx, stream, events.AnyVersion, ev)
	return err
}

func derivedID(eventID, what string) string {
	return uuid.NewSHA1(eventIDs, []byte(eventID+"/"+what)).String()
}

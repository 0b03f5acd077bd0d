package orders

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// checkLedgers holds money and stock to the orders' outcomes, once every
// saga has ended. It reads the events themselves, not the aggregates'
// state: in the Inventory aggregate a second reservation of an order
// overwrites the first and a second release deletes nothing, so a
// reservation or release applied twice leaves no trace there. It holds
//   - each order to at most one reservation, of its quantity and SKU, and
//     at most one release, of what was reserved and only while it was; to
//     at most one charge, of its price, and at most one refund, of what
//     was charged and only once it was;
//   - a confirmed order to its reservation and its charge, kept; a
//     cancelled one to neither, or both undone;
//   - each SKU's shelf to never going below zero, and to ending at what
//     was restocked less the confirmed orders' quantities;
//   - each customer's charges less refunds (customer_spending) to what
//     their confirmed orders cost.
//
// So a lost release or refund, or one sent twice, shows here; read models
// equal to their rebuild alone would not show it. It returns one line per
// disagreement, naming the order, SKU or customer, sorted.
func checkLedgers(ctx context.Context, store converge.Store, app *App) ([]string, error) {
	spending, err := typedRows[Spending](ctx, app.client.Projections().View(CustomerSpending).Table("customers"))
	if err != nil {
		return nil, err
	}
	l := newLedger()
	reg := store.Registry()
	var after events.Token
	for {
		envs, err := store.ReadAll(ctx, after, 1000)
		if err != nil {
			return nil, err
		}
		if len(envs) == 0 {
			return l.problems(spending), nil
		}
		for _, env := range envs {
			after = env.Token
			if !ledgerStream(env.StreamID) {
				continue // commands, saga timers
			}
			e, err := reg.Decode(env)
			if err != nil {
				return nil, fmt.Errorf("orders: ledgers: %s event %d: %w", env.StreamID, env.Version, err)
			}
			l.add(e)
		}
	}
}

// ledgerStream reports whether streamID is an order's, a shelf's or a
// payment's.
func ledgerStream(streamID string) bool {
	return strings.HasPrefix(streamID, orderStreamPrefix) || strings.HasPrefix(streamID, stockStreamPrefix) ||
		strings.HasPrefix(streamID, paymentStreamPrefix)
}

// ledger is what checkLedgers folds the events into: every reservation,
// release, charge and refund, by order, and each shelf's count as it went.
type ledger struct {
	orders  map[string]*orderEntry // by order id
	shelves map[string]*shelfEntry // by SKU
}

// orderEntry is what happened to one order's stock and money, in order.
type orderEntry struct {
	placed   *OrderPlaced // nil: never placed
	status   string       // StatusPending, StatusConfirmed, StatusCancelled; "" when never placed
	reserved []StockReserved
	released []StockReleased
	charged  []PaymentCharged
	refunded []PaymentRefunded
	// releasedIdle and refundedIdle record a release that came while
	// nothing was reserved, a refund while nothing was charged: the
	// handlers void instead (StockReservationVoided, PaymentVoided).
	releasedIdle, refundedIdle bool
}

// shelfEntry is one SKU's shelf.
type shelfEntry struct {
	added, onHand int
	// below says when the shelf first went below zero; "" while it has not.
	below string
}

func newLedger() *ledger {
	return &ledger{orders: map[string]*orderEntry{}, shelves: map[string]*shelfEntry{}}
}

func (l *ledger) order(id string) *orderEntry {
	o := l.orders[id]
	if o == nil {
		o = &orderEntry{}
		l.orders[id] = o
	}
	return o
}

func (l *ledger) shelf(sku string) *shelfEntry {
	s := l.shelves[sku]
	if s == nil {
		s = &shelfEntry{}
		l.shelves[sku] = s
	}
	return s
}

// add folds one event, in the order of the feed (each stream's order).
func (l *ledger) add(e any) {
	switch e := e.(type) {
	case OrderPlaced:
		o := l.order(e.OrderID)
		o.placed, o.status = &e, StatusPending
	case OrderConfirmed:
		l.order(e.OrderID).status = StatusConfirmed
	case OrderCancelled:
		l.order(e.OrderID).status = StatusCancelled
	case StockAdded:
		s := l.shelf(e.SKU)
		s.added += e.Qty
		s.onHand += e.Qty
	case StockReserved:
		o := l.order(e.OrderID)
		o.reserved = append(o.reserved, e)
		s := l.shelf(e.SKU)
		s.onHand -= e.Qty
		if s.onHand < 0 && s.below == "" {
			s.below = fmt.Sprintf("stock of %s: %d on hand after reserving %d for %s", e.SKU, s.onHand, e.Qty, e.OrderID)
		}
	case StockReleased:
		o := l.order(e.OrderID)
		o.releasedIdle = o.releasedIdle || len(o.released) >= len(o.reserved)
		o.released = append(o.released, e)
		l.shelf(e.SKU).onHand += e.Qty
	case PaymentCharged:
		o := l.order(e.OrderID)
		o.charged = append(o.charged, e)
	case PaymentRefunded:
		o := l.order(e.OrderID)
		o.refundedIdle = o.refundedIdle || len(o.refunded) >= len(o.charged)
		o.refunded = append(o.refunded, e)
	}
}

// problems returns every disagreement of the folded events among
// themselves and with spending (customer_spending's rows), sorted.
func (l *ledger) problems(spending map[string]Spending) []string {
	var out []string
	confirmedQty := map[string]int{}     // by SKU
	confirmedCents := map[string]int64{} // by customer
	for _, id := range slices.Sorted(maps.Keys(l.orders)) {
		o := l.orders[id]
		out = append(out, o.problems(id)...)
		if o.placed != nil && o.status == StatusConfirmed {
			confirmedQty[o.placed.SKU] += o.placed.Qty
			confirmedCents[o.placed.CustomerID] += o.placed.Cents
		}
	}
	skus := map[string]bool{}
	for sku := range confirmedQty {
		skus[sku] = true
	}
	for sku := range l.shelves {
		skus[sku] = true
	}
	for _, sku := range slices.Sorted(maps.Keys(skus)) {
		s := l.shelves[sku]
		if s == nil {
			s = &shelfEntry{}
		}
		if s.below != "" {
			out = append(out, s.below)
		}
		if want := s.added - confirmedQty[sku]; s.onHand != want {
			out = append(out, fmt.Sprintf("stock of %s: %d on hand, restocked %d - confirmed orders %d = %d", sku, s.onHand, s.added, confirmedQty[sku], want))
		}
	}
	customers := map[string]bool{}
	for c := range confirmedCents {
		customers[c] = true
	}
	for c := range spending {
		customers[c] = true
	}
	for _, c := range slices.Sorted(maps.Keys(customers)) {
		sp := spending[c]
		if net := sp.ChargedCents - sp.RefundedCents; net != confirmedCents[c] {
			out = append(out, fmt.Sprintf("money of %s: charged %d - refunded %d = %d, confirmed orders %d", c, sp.ChargedCents, sp.RefundedCents, net, confirmedCents[c]))
		}
	}
	slices.Sort(out)
	return out
}

// problems returns what is wrong with order id's stock and money.
func (o *orderEntry) problems(id string) []string {
	var out []string
	p := o.placed
	sku, customer := o.skuAndCustomer()
	stock := func(format string, args ...any) {
		out = append(out, "stock of "+sku+": "+fmt.Sprintf(format, args...))
	}
	money := func(format string, args ...any) {
		out = append(out, "money of "+customer+": "+fmt.Sprintf(format, args...))
	}
	for _, r := range o.reserved {
		switch {
		case p == nil:
			out = append(out, fmt.Sprintf("stock of %s: %d reserved for %s, which was never placed", r.SKU, r.Qty, id))
		case r.SKU != p.SKU:
			out = append(out, fmt.Sprintf("stock of %s: %d reserved for %s, an order of %s", r.SKU, r.Qty, id, p.SKU))
		case r.Qty != p.Qty:
			stock("%d reserved for %s, which ordered %d", r.Qty, id, p.Qty)
		}
	}
	for _, c := range o.charged {
		switch {
		case p == nil:
			out = append(out, fmt.Sprintf("money of %s: %d charged for %s, which was never placed", c.CustomerID, c.Cents, id))
		case c.Cents != p.Cents:
			money("%d charged for %s, which costs %d", c.Cents, id, p.Cents)
		}
	}
	if n := len(o.reserved); n > 1 {
		stock("%s reserved %d times", id, n)
	}
	switch n := len(o.released); {
	case n > 1:
		stock("%s released %d times", id, n)
	case o.releasedIdle:
		stock("%s released while nothing was reserved for it", id)
	case n == 1 && o.released[0].Qty != o.reserved[0].Qty:
		stock("%s released %d, reserved %d", id, o.released[0].Qty, o.reserved[0].Qty)
	}
	if n := len(o.charged); n > 1 {
		money("%s charged %d times", id, n)
	}
	switch n := len(o.refunded); {
	case n > 1:
		money("%s refunded %d times", id, n)
	case o.refundedIdle:
		money("%s refunded while nothing was charged", id)
	case n == 1 && o.refunded[0].Cents != o.charged[0].Cents:
		money("%s refunded %d, charged %d", id, o.refunded[0].Cents, o.charged[0].Cents)
	}
	var held int
	var kept int64
	for _, r := range o.reserved {
		held += r.Qty
	}
	for _, r := range o.released {
		held -= r.Qty
	}
	for _, c := range o.charged {
		kept += c.Cents
	}
	for _, r := range o.refunded {
		kept -= r.Cents
	}
	switch {
	case p == nil && o.status != "":
		out = append(out, fmt.Sprintf("order %s is %s but was never placed", id, o.status))
	case p == nil:
	case o.status == StatusConfirmed:
		if len(o.reserved) == 0 {
			stock("confirmed order %s has nothing reserved", id)
		} else if len(o.released) > 0 {
			stock("confirmed order %s had its reservation released", id)
		}
		if len(o.charged) == 0 {
			money("confirmed order %s was not charged", id)
		} else if len(o.refunded) > 0 {
			money("confirmed order %s was refunded", id)
		}
	case o.status == StatusCancelled:
		if held > 0 {
			stock("cancelled order %s keeps %d reserved (a release lost)", id, held)
		}
		if kept > 0 {
			money("cancelled order %s keeps %d charged (a refund lost)", id, kept)
		}
	default:
		out = append(out, fmt.Sprintf("order %s is still %s: its stock and money are not settled", id, o.status))
	}
	return out
}

// skuAndCustomer returns the order's SKU and customer, from the events
// about it when it was never placed.
func (o *orderEntry) skuAndCustomer() (sku, customer string) {
	if o.placed != nil {
		return o.placed.SKU, o.placed.CustomerID
	}
	for _, r := range o.reserved {
		sku = r.SKU
	}
	for _, r := range o.released {
		sku = cmp.Or(sku, r.SKU)
	}
	for _, c := range o.charged {
		customer = c.CustomerID
	}
	for _, r := range o.refunded {
		customer = cmp.Or(customer, r.CustomerID)
	}
	return sku, customer
}

// typedRows reads every row of r into a T, by key.
func typedRows[T any](ctx context.Context, r projections.Reader) (map[string]T, error) {
	out := map[string]T{}
	after := ""
	for {
		rows, err := r.List(ctx, &projections.ListOptions{After: after, Limit: 500})
		if err != nil {
			return nil, err
		}
		for _, row := range rows {
			var v T
			if err := row.Decode(&v); err != nil {
				return nil, err
			}
			out[row.Key] = v
			after = row.Key
		}
		if len(rows) < 500 {
			return out, nil
		}
	}
}

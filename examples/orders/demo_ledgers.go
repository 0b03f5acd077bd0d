package orders

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// checkLedgers holds money and stock to the orders' outcomes, once every
// saga has ended: each customer's charges less refunds (customer_spending)
// equal what their confirmed orders cost, and each SKU's stock is reserved
// for exactly the confirmed orders, in their quantities. A lost release or
// refund, or one sent twice, shows here; read models equal to their rebuild
// alone would not show it. It returns one line per disagreement.
func checkLedgers(ctx context.Context, store converge.Store, app *App) ([]string, error) {
	summaries, err := typedRows[Summary](ctx, app.client.Projections().View(OrderSummary).Table("orders"))
	if err != nil {
		return nil, err
	}
	spending, err := typedRows[Spending](ctx, app.client.Projections().View(CustomerSpending).Table("customers"))
	if err != nil {
		return nil, err
	}
	confirmedCents := map[string]int64{}
	confirmed := map[string]Summary{} // by order id
	for _, s := range summaries {
		if s.Status == StatusConfirmed {
			confirmedCents[s.CustomerID] += s.Cents
			confirmed[s.OrderID] = s
		}
	}
	var out []string
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
	for _, sku := range slices.Sorted(maps.Keys(Catalog)) {
		inv, _, err := events.Load(ctx, store, inventoryAggregate, StockStream(sku))
		if err != nil {
			return nil, err
		}
		for _, id := range slices.Sorted(maps.Keys(inv.Reserved)) {
			if s, ok := confirmed[id]; !ok || s.SKU != sku || s.Qty != inv.Reserved[id] {
				out = append(out, fmt.Sprintf("stock of %s: %d reserved for %s, which is not a confirmed order of them", sku, inv.Reserved[id], id))
			}
		}
		for _, s := range confirmed {
			if s.SKU == sku && inv.Reserved[s.OrderID] != s.Qty {
				out = append(out, fmt.Sprintf("stock of %s: confirmed order %s of %d has %d reserved", sku, s.OrderID, s.Qty, inv.Reserved[s.OrderID]))
			}
		}
	}
	return out, nil
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

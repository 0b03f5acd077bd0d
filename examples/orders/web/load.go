package web

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// Defaults of LoadConfig.
const (
	// DefaultLoadCustomers is how many simulated customers place orders
	// at a time.
	DefaultLoadCustomers = 5
	// DefaultLoadOrdersPerCustomer is how many orders a simulated customer
	// places before a new one takes its place: few enough that RandomOrder's
	// orders never take a customer past the order service's default credit
	// limit (orders.DefaultCreditLimitCents caps what a customer has
	// confirmed, for good), so the load flows for as long as it runs.
	DefaultLoadOrdersPerCustomer = 5
)

// MinLoadRate is the lowest LoadConfig.Rate: one order every 10⁶ seconds
// (about 11.6 days). The wait between orders must fit a time.Duration,
// which a rate below about 1.1e-10 overflows; a slower demo shows nothing
// anyway.
const MinLoadRate = 1e-6

// LoadConfig configures RunLoad.
type LoadConfig struct {
	// Rate is how many orders a second to place. Required: from
	// MinLoadRate to 10000.
	Rate float64
	// Customers is how many simulated customers place orders at a time.
	// Defaults to DefaultLoadCustomers.
	Customers int
	// OrdersPerCustomer is how many orders a simulated customer places
	// before a new customer takes its place, as in a shop where many
	// people buy a few times each. Defaults to
	// DefaultLoadOrdersPerCustomer.
	OrdersPerCustomer int
	// Order makes each simulated order of a customer. Defaults to
	// RandomOrder.
	Order func(customer string) PlaceOrder
	// OnError receives failed placements, which RunLoad carries on after.
	// Defaults to nil (ignored).
	OnError func(error)
}

// RunLoad places simulated orders at cfg.Rate through o until ctx ends, so
// the page and the dashboard have something to show. Its customers are
// new to the shop (load-<run>-<n>, <run> random per call): a server started
// again on the same database does not carry on with customers who bought
// before, and the page's own customers (c-1) are left alone. It returns
// nil when ctx ends, and an error only for a bad cfg.
func RunLoad(ctx context.Context, o Orders, cfg *LoadConfig) error {
	c := *cfg
	switch {
	case !(c.Rate >= MinLoadRate && c.Rate <= 10_000): // NaN too
		return fmt.Errorf("web: LoadConfig.Rate is %g orders/s: use a rate from %g (web.MinLoadRate) to 10000", c.Rate, MinLoadRate)
	case c.Customers < 0 || c.OrdersPerCustomer < 0:
		return fmt.Errorf("web: LoadConfig.Customers is %d and OrdersPerCustomer %d: use 0 for the defaults or positive numbers", c.Customers, c.OrdersPerCustomer)
	}
	c.Customers = cmp.Or(c.Customers, DefaultLoadCustomers)
	c.OrdersPerCustomer = cmp.Or(c.OrdersPerCustomer, DefaultLoadOrdersPerCustomer)
	if c.Order == nil {
		c.Order = RandomOrder
	}
	run := rand.Uint32() //nolint:gosec // simulated traffic, not security
	type customer struct {
		id     string
		placed int
	}
	slots := make([]customer, c.Customers)
	next := 0
	tick := time.NewTicker(time.Duration(float64(time.Second) / c.Rate))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		cu := &slots[rand.IntN(len(slots))] //nolint:gosec // simulated traffic
		if cu.id == "" || cu.placed == c.OrdersPerCustomer {
			next++
			*cu = customer{id: fmt.Sprintf("load-%08x-%d", run, next)}
		}
		cu.placed++
		if _, _, err := o.Place(ctx, c.Order(cu.id)); err != nil && ctx.Err() == nil && c.OnError != nil {
			c.OnError(err)
		}
	}
}

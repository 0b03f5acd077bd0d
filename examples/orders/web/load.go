package web

import (
	"cmp"
	"context"
	"fmt"
	"time"
)

// DefaultLoadCustomers is how many simulated customers place orders.
const DefaultLoadCustomers = 5

// LoadConfig configures RunLoad.
type LoadConfig struct {
	// Rate is how many orders a second to place. Required (> 0).
	Rate float64
	// Customers is how many customers (c-1, c-2, …) place them. Defaults to
	// DefaultLoadCustomers.
	Customers int
	// Order makes each simulated order for customers customers. Defaults
	// to RandomOrder.
	Order func(customers int) PlaceOrder
	// OnError receives failed placements, which RunLoad carries on after.
	// Defaults to nil (ignored).
	OnError func(error)
}

// RunLoad places simulated orders at cfg.Rate through o until ctx ends, so
// the page and the dashboard have something to show. It returns nil when
// ctx ends, and an error only for a bad cfg.
func RunLoad(ctx context.Context, o Orders, cfg *LoadConfig) error {
	c := *cfg
	if c.Rate <= 0 || c.Rate > 10_000 {
		return fmt.Errorf("web: LoadConfig.Rate is %g orders/s: use a rate above 0 and at most 10000", c.Rate)
	}
	c.Customers = cmp.Or(c.Customers, DefaultLoadCustomers)
	if c.Order == nil {
		c.Order = RandomOrder
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / c.Rate))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if _, _, err := o.Place(ctx, c.Order(c.Customers)); err != nil && ctx.Err() == nil && c.OnError != nil {
			c.OnError(err)
		}
	}
}

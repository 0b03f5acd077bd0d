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
	// DefaultLoadCustomers is how many simulated customers place orders.
	DefaultLoadCustomers = 5
	// DefaultLoadMaxAmountCents is the largest simulated order: 1500 EUR,
	// so about a third of the orders are over the example's 1000 EUR
	// payment limit and end cancelled.
	DefaultLoadMaxAmountCents = 150_000
)

// LoadConfig configures RunLoad.
type LoadConfig struct {
	// Rate is how many orders a second to place. Required (> 0).
	Rate float64
	// Customers is how many customers (c-1, c-2, …) place them. Defaults to
	// DefaultLoadCustomers.
	Customers int
	// MaxAmountCents bounds the random amounts. Defaults to
	// DefaultLoadMaxAmountCents.
	MaxAmountCents int64
	// OnError receives failed placements, which RunLoad carries on after.
	// Defaults to nil (ignored).
	OnError func(error)
}

// RunLoad places random orders at cfg.Rate through o until ctx ends, so the
// page and the dashboard have something to show. It returns nil when ctx
// ends, and an error only for a bad cfg.
func RunLoad(ctx context.Context, o Orders, cfg *LoadConfig) error {
	c := *cfg
	if c.Rate <= 0 || c.Rate > 10_000 {
		return fmt.Errorf("web: LoadConfig.Rate is %g orders/s: use a rate above 0 and at most 10000", c.Rate)
	}
	c.Customers = cmp.Or(c.Customers, DefaultLoadCustomers)
	c.MaxAmountCents = cmp.Or(c.MaxAmountCents, DefaultLoadMaxAmountCents)
	tick := time.NewTicker(time.Duration(float64(time.Second) / c.Rate))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		cmd := PlaceOrder{
			CustomerID:  fmt.Sprintf("c-%d", 1+rand.IntN(c.Customers)),   //nolint:gosec // simulated traffic, not security
			AmountCents: 100 + rand.Int64N(max(1, c.MaxAmountCents-100)), //nolint:gosec // simulated traffic, not security
		}
		if _, _, err := o.Place(ctx, cmd); err != nil && ctx.Err() == nil && c.OnError != nil {
			c.OnError(err)
		}
	}
}

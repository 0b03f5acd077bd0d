package orders

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// Defaults of Config.
const (
	// DefaultCreditLimitCents is how much a customer's confirmed orders
	// and the open ones placed up to an order, that order included, may
	// add up to (Config.CreditLimitCents).
	DefaultCreditLimitCents = 200_000
	// DefaultPaymentTimeout is how long the saga waits for the gateway.
	DefaultPaymentTimeout = 30 * time.Second
)

// Config configures an App. The zero value (or nil) is ready to use.
type Config struct {
	// CreditLimitCents caps what a customer has confirmed plus the open
	// orders they placed up to the order checked, that order included: an
	// order is refused when it would take the customer over. Orders placed
	// later do not count against it (their own checks count it), and
	// confirmed orders count for good. Defaults to DefaultCreditLimitCents.
	CreditLimitCents int64
	// PaymentTimeout is how long the saga waits for a payment before it
	// cancels the order. Defaults to DefaultPaymentTimeout (30s).
	PaymentTimeout time.Duration
	// StuckAfter is how long a fulfilment step may wait for order_summary
	// before the engine flags the instance stuck (saga.Config.StuckAfter).
	// Defaults to saga.DefaultStuckAfter (5m).
	StuckAfter time.Duration
	// LagSLA and LagInterval are converge.Config's: the lag monitor's SLA
	// for read models that declare none, and how often it samples.
	// Default to lag.DefaultSLA and converge.DefaultLagInterval.
	LagSLA, LagInterval time.Duration
	// SagaPartitions is converge.Config.SagaPartitions. Defaults to
	// converge.DefaultSagaPartitions.
	SagaPartitions int
	// Router runs the saga and the command handlers (converge.Config.Router).
	// Defaults to one the client creates.
	Router *message.Router
	// BeforeApply, when set, runs before a read model applies an event,
	// before its unit of work's transaction begins (each event then heads
	// a unit of its own: see feed.ErrCut), so it can delay the read model
	// without holding the feed back: the demo injects lag with it, tests
	// pause a read model. An error fails the attempt. Defaults to nil.
	BeforeApply func(ctx context.Context, readModel string, env events.Envelope) error
	// OnUpdate, when set, is called after each committed read-model change
	// (a live view's hub plugs in here). It must not block. Defaults to
	// nil.
	OnUpdate func(projections.Update)
	// Registerer receives the metrics. Defaults to nil (not registered).
	Registerer prometheus.Registerer
	// Clock drives the saga's timers. Defaults to events.SystemClock.
	Clock events.Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c *Config) withDefaults() Config {
	var out Config
	if c != nil {
		out = *c
	}
	if out.CreditLimitCents == 0 {
		out.CreditLimitCents = DefaultCreditLimitCents
	}
	if out.PaymentTimeout == 0 {
		out.PaymentTimeout = DefaultPaymentTimeout
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	return out
}

func (c *Config) validate() error {
	switch {
	case c.CreditLimitCents < 0:
		return fmt.Errorf("orders: Config.CreditLimitCents is %d: use 0 for the default or a positive amount", c.CreditLimitCents)
	case c.PaymentTimeout < 0:
		return fmt.Errorf("orders: Config.PaymentTimeout is %s: use 0 for the default or a positive duration", c.PaymentTimeout)
	case c.StuckAfter < 0:
		return fmt.Errorf("orders: Config.StuckAfter is %s: use 0 for the default or a positive duration", c.StuckAfter)
	}
	return nil
}

// Errors of the order service.
var (
	// ErrInvalidOrder is matched by every refusal of a PlaceOrder.
	ErrInvalidOrder = errors.New("orders: invalid order")
	// ErrNotFound is returned by Get for an order the summary does not
	// have (yet: check the read's staleness).
	ErrNotFound = errors.New("orders: order not found")
)

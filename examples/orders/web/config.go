package web

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
)

// DefaultMaxBodyBytes caps a request body: an order is a few dozen bytes.
const DefaultMaxBodyBytes = 16 << 10

// Config configures a Server. Orders, Tracker and ReadModels are required.
type Config struct {
	// Orders is the order domain. Required.
	Orders Orders
	// Tracker is what GET /orders and GET /orders/{id} wait on before they
	// read. Required.
	Tracker *consistency.Tracker
	// ReadModels are the projection names Orders.Get and Orders.List read,
	// so the waits know which checkpoints must reach the client's token.
	// Required.
	ReadModels []string
	// Ops feeds the dashboard's saga and dead-letter panels. Defaults to
	// NoOps{} (none of either).
	Ops Ops
	// Lag feeds the dashboard's lag chart. Defaults to an empty history:
	// the chart says no projection is measured.
	Lag *LagHistory
	// Catalog, when set, is served at GET /read-models (see
	// consistency.Catalog.Handler). Defaults to nil: no such route.
	Catalog *consistency.Catalog
	// AllowedOrigins are the origins ("https://app.example.com") whose
	// pages may call the API and open the live WebSocket from another
	// site; "*" allows any. Responses to them carry CORS headers that
	// expose X-Consistency-Position and X-Consistency-Stale. The operator
	// API under /api/ stays same-origin only. Defaults to none:
	// same-origin only.
	AllowedOrigins []string
	// MaxBodyBytes caps request bodies; a larger one is answered with 413.
	// Defaults to DefaultMaxBodyBytes (16 KiB).
	MaxBodyBytes int64
	// Logger receives server-side failures. Defaults to slog.Default().
	Logger *slog.Logger
	// Clock is what "now" means for the lag chart's window. Defaults to
	// events.SystemClock.
	Clock events.Clock
}

func (c *Config) withDefaults() Config {
	out := *c
	if out.Ops == nil {
		out.Ops = NoOps{}
	}
	if out.Lag == nil {
		out.Lag = NewLagHistory(nil)
	}
	out.MaxBodyBytes = cmp.Or(out.MaxBodyBytes, DefaultMaxBodyBytes)
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	if out.Clock == nil {
		out.Clock = events.SystemClock{}
	}
	out.ReadModels = slices.Clone(out.ReadModels)
	out.AllowedOrigins = slices.Clone(out.AllowedOrigins)
	return out
}

func (c *Config) validate() error {
	switch {
	case c.Orders == nil:
		return errors.New("web: Config.Orders is nil (pass the order domain, such as the *App of NewApp)")
	case c.Tracker == nil:
		return errors.New("web: Config.Tracker is nil (pass the consistency.Tracker the projections advance)")
	case len(c.ReadModels) == 0 || slices.Contains(c.ReadModels, ""):
		return errors.New("web: Config.ReadModels is empty or holds an empty name (name the projections Orders.Get reads, such as order_summary)")
	case c.MaxBodyBytes < 0:
		return fmt.Errorf("web: Config.MaxBodyBytes is %d: use 0 for the default (%d) or a positive size", c.MaxBodyBytes, DefaultMaxBodyBytes)
	}
	for i, o := range c.AllowedOrigins {
		if o == "" {
			return fmt.Errorf("web: Config.AllowedOrigins[%d] is empty (remove it, or use \"*\" for any origin)", i)
		}
	}
	return nil
}

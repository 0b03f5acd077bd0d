package saga

import (
	"context"
	"slices"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// gateOutcome is what the wait before a step found.
type gateOutcome struct {
	gated   bool
	reached bool
	models  []string
	token   events.Token
	waited  time.Duration
}

// Gate is the processor's gate function: it names the read models the
// handlers for env will read and the token they must reach, the later of
// env's token and the instance's causal token (read without a lock,
// through the event's unit: see feed.GateFunc). Events for instances that
// are parked or ended need no wait: they queue or are ignored.
func (e *Engine) Gate(ctx context.Context, env events.Envelope) ([]string, events.Token, error) {
	targets, v, err := e.route(env)
	if err != nil {
		return nil, events.Token{}, nil //nolint:nilerr // nothing to wait for: Handle reports the undecodable event with its unit
	}
	if len(targets) == 0 {
		return nil, events.Token{}, nil
	}
	return e.gateFor(ctx, env, targets, v)
}

func (e *Engine) gateFor(ctx context.Context, env events.Envelope, targets []target, v any) ([]string, events.Token, error) {
	tok := env.Token
	var models []string
	for _, t := range targets {
		if len(t.h.reads) == 0 {
			continue
		}
		id, err := t.key(v, env)
		if err != nil {
			continue // Handle reports it
		}
		rows := feed.RowsFor(ctx, e.cfg.Store.Registry(), e.cfg.Store)
		in, found, err := e.load(ctx, rows, t.saga.name, id, feed.LockNone)
		if err != nil {
			return nil, tok, err
		}
		if !found && !t.h.start {
			// No step will run: the message is ignored (no instance). A
			// wait would hold the partition up for nothing and count as
			// a read model's lag.
			continue
		}
		if found {
			if in.blocked() || in.ended() {
				continue
			}
			if e.mayHaveTaken(in, env) {
				// Only then can it be a duplicate (the instance's token
				// passed it): one runs no step, and must not wait for the
				// models to reach a token its own later commands raised.
				dup, err := e.handled(ctx, rows, t.saga.name, id, env.ID)
				if err != nil {
					return nil, tok, err
				}
				if dup {
					continue
				}
			}
			tok = tok.Max(in.Token)
		}
		for _, m := range t.h.reads {
			if !slices.Contains(models, m) {
				models = append(models, m)
			}
		}
	}
	return models, tok, nil
}

// gateOutcome returns the runtime's gate outcome, or waits itself (before
// the unit is used, so no transaction is open) when the runtime did not
// gate the event.
func (e *Engine) gateOutcome(ctx context.Context, env events.Envelope, targets []target, v any) (gateOutcome, error) {
	if g, ok := processorGate(ctx); ok {
		e.observeWait(targets, g)
		return g, nil
	}
	models, tok, err := e.gateFor(ctx, env, targets, v)
	if err != nil || len(models) == 0 {
		return gateOutcome{}, err
	}
	timeout := e.cfg.GateTimeout
	if feed.UnitIndex(ctx) > 0 {
		// Earlier events of this unit may have written: waiting now would
		// hold their transaction open. Judge by what the Tracker knows.
		timeout = 0
	}
	wctx, cancel := context.WithTimeout(events.ContextWithUnit(ctx, nil), timeout)
	defer cancel()
	st, err := e.cfg.Tracker.Wait(wctx, tok, models...)
	if err != nil && ctx.Err() != nil {
		return gateOutcome{}, ctx.Err()
	}
	g := gateOutcome{gated: true, reached: err == nil && !st.Stale, models: models, token: tok, waited: st.Waited}
	e.observeWait(targets, g)
	return g, nil
}

func (e *Engine) observeWait(targets []target, g gateOutcome) {
	if !g.gated {
		return
	}
	reached := "false"
	if g.reached {
		reached = "true"
	}
	e.metrics.Waits.WithLabelValues(reached).Inc()
	for _, t := range targets {
		if len(t.h.reads) > 0 {
			e.metrics.WaitSeconds.WithLabelValues(t.saga.name).Observe(g.waited.Seconds())
		}
	}
}

// reached reports whether every model has reached need: by the gate's
// outcome, or by what the tracker knows now.
func (e *Engine) reached(g gateOutcome, need events.Token, models []string) bool {
	if g.gated && g.reached && !g.token.Before(need) && covers(g.models, models) {
		return true
	}
	for _, m := range models {
		pos, ok := e.cfg.Tracker.Position(m)
		if !ok || pos.Before(need) {
			return false
		}
	}
	return true
}

func covers(have, want []string) bool {
	for _, m := range want {
		if !slices.Contains(have, m) {
			return false
		}
	}
	return true
}

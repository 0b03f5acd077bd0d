package saga

import (
	"context"

	"github.com/converge-es/converge/events/feed"
)

// processorGate returns the gate outcome feed.Processor computed for the
// event, when it ran the engine's Gate and named models (Gated): otherwise
// the engine waits itself, before it uses the unit.
func processorGate(ctx context.Context) (gateOutcome, bool) {
	g := feed.GateFromContext(ctx)
	if !g.Gated {
		return gateOutcome{}, false
	}
	return gateOutcome{gated: true, reached: g.Reached, models: g.Models, token: g.Token, waited: g.Waited}, true
}

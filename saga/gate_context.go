package saga

import "context"

// processorGate returns the gate outcome feed.Processor computed for the
// event, when it ran the engine's Gate.
//
// TODO(runtime): return feed.GateFromContext(ctx) once feed.Processor is
// merged (when its Gated is false the engine waits itself).
func processorGate(context.Context) (gateOutcome, bool) { return gateOutcome{}, false }

package converge

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// GateStats counts the saga processor's gates since the client was built:
// the events whose read models it checked as it delivered them. A message
// that arrives while its instance's step is parked is queued without a
// gate, and the parked-step driver runs it later on caught-up models: it
// is not counted.
type GateStats struct {
	// Gated counts events whose saga step reads read models.
	Gated int64
	// Behind counts those whose read models had not reached the step's
	// causal token when the event arrived: without the gate, each would
	// have been decided on a read model older than the events that led to
	// it. The step waited (or was parked) instead.
	Behind int64
}

// gateWaiter is the Tracker as the saga processor's feed.Waiter, counting
// how often the read models were behind when a step arrived.
type gateWaiter struct {
	t             *consistency.Tracker
	gated, behind atomic.Int64

	// seen remembers the events already counted, by their tokens, so a
	// step delivered again (a retry, a cut unit) counts once. It is cleared when it grows past
	// maxSeen: the counts are for reports, not for correctness.
	mu   sync.Mutex
	seen map[events.Token]bool // event's token → counted as behind
}

const maxSeen = 100_000

// count records a gate at token, behind or not, once per gated event.
func (w *gateWaiter) count(ctx context.Context, token events.Token, behind bool) {
	// By the event's own token, not the gate's: the gate waits for the
	// instance's causal token when it is ahead, and the events an instance
	// has queued behind one of its own commands all share it.
	if evs, i := feed.UnitEvents(ctx), feed.UnitIndex(ctx); i < len(evs) {
		token = evs[i].Token
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.seen == nil || len(w.seen) > maxSeen {
		w.seen = map[events.Token]bool{}
	}
	was, ok := w.seen[token]
	if !ok {
		w.gated.Add(1)
	}
	if behind && !was {
		w.behind.Add(1)
	}
	w.seen[token] = was || behind
}

func (w *gateWaiter) WaitReached(ctx context.Context, token events.Token, models ...string) (bool, []string, error) {
	if ctx.Err() == nil {
		// Until a model's stored position is read, the tracker reports it
		// behind: the first gate after a start would count a caught-up
		// model as Behind. A failed read leaves it unknown, and the wait
		// below reads it again.
		_ = w.t.Learn(ctx, models...)
	}
	// An expired context makes WaitReached check without waiting.
	now, cancel := context.WithDeadline(ctx, time.Time{})
	reached, behind, err := w.t.WaitReached(now, token, models...)
	cancel()
	if err != nil {
		return false, nil, err
	}
	if reached {
		w.count(ctx, token, false)
		return true, nil, nil
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		// A check behind the head of a unit: the processor cuts the unit
		// and gates the event again at the head of the next, counted then.
		return false, behind, nil
	}
	w.count(ctx, token, true)
	return w.t.WaitReached(ctx, token, models...)
}

// GateStats returns the saga processor's gate counters.
func (cl *Client) GateStats() GateStats {
	if cl.gate == nil {
		return GateStats{}
	}
	return GateStats{Gated: cl.gate.gated.Load(), Behind: cl.gate.behind.Load()}
}

package feed

import (
	"context"
	"time"

	"github.com/converge-es/converge/events"
)

// GateFunc names the read models a handler is about to read for env and
// the token they must have reached first. No models means no wait.
//
// ctx carries the event's unit: read what the answer needs through
// RowsFor, without a lock, and write nothing. At the head of a unit
// (UnitIndex 0) nothing has begun it, and such a read does not. Behind the
// head the unit already holds earlier events' writes, which the read then
// sees, and on PostgreSQL a connection: a read through the store there
// takes a second connection while the unit holds one, and with every
// partition doing so at once a pool no larger than the partitions
// deadlocks.
type GateFunc func(ctx context.Context, env events.Envelope) (models []string, token events.Token, err error)

// Waiter waits until named read models have reached a token.
// consistency.Tracker implements it (Tracker.WaitReached).
type Waiter interface {
	// WaitReached blocks until every model has reached token or ctx ends,
	// and reports whether they did and which did not. It returns an error
	// only when it cannot judge (unknown model, tracker stopped).
	WaitReached(ctx context.Context, token events.Token, models ...string) (reached bool, behind []string, err error)
}

// GateResult is the outcome of an event's gate, as its handler sees it
// (GateFromContext).
type GateResult struct {
	// Gated is false when the event's GateFunc named no model: nothing was
	// waited for and Reached is true.
	Gated bool
	// Reached reports that every model had reached Token before the
	// handler's unit began: reads of them now reflect at least Token.
	Reached bool
	// Models are the models the gate named; Behind those that had not
	// reached Token when the wait gave up.
	Models []string
	Behind []string
	// Token is what the models were waited for.
	Token events.Token
	// Waited is how long the wait took.
	Waited time.Duration
}

type (
	gateKey      struct{}
	unitIndexKey struct{}
	unitEvtsKey  struct{}
)

// GateFromContext returns the gate outcome of the event a handler runs
// for. Without a gate (the processor has none) it reports Reached.
func GateFromContext(ctx context.Context) GateResult {
	if g, ok := ctx.Value(gateKey{}).(GateResult); ok {
		return g
	}
	return GateResult{Reached: true}
}

func contextWithGate(ctx context.Context, g GateResult) context.Context {
	return context.WithValue(ctx, gateKey{}, g)
}

// UnitIndex returns the position of the event a handler runs for within
// its unit: 0 for the first (or only) event, n when n earlier events share
// the unit and commit with it. A handler that must not hold earlier
// events' writes open (a long wait, say) returns ErrCut when it is above 0.
func UnitIndex(ctx context.Context) int {
	i, _ := ctx.Value(unitIndexKey{}).(int)
	return i
}

func contextWithUnitIndex(ctx context.Context, i int) context.Context {
	return context.WithValue(ctx, unitIndexKey{}, i)
}

// UnitEvents returns the events delivered in the handler's unit, in order:
// the one the handler runs for is at UnitIndex. A handler at the head can
// read what all of them need in one round trip (Rows.Prefetch) instead of
// one read per event. Events after the handler's may still be cut from the
// unit (ErrCut, a Nack) and delivered again in another; reading their rows
// early costs nothing but the read. The slice is shared: do not change
// it. Outside a delivery it returns nil.
func UnitEvents(ctx context.Context) []events.Envelope {
	evs, _ := ctx.Value(unitEvtsKey{}).([]events.Envelope)
	return evs
}

func contextWithUnitEvents(ctx context.Context, evs []events.Envelope) context.Context {
	return context.WithValue(ctx, unitEvtsKey{}, evs)
}

type leaseKey struct{}

// delivery is what a handler's context says of the delivery its unit
// belongs to.
type delivery struct {
	lease Lease
	// skipsCarried: the consumer skips what the partitions of its
	// processor's previous count handled.
	skipsCarried bool
}

// LeaseFromContext returns the lease a handler's unit is delivered under:
// its generation, and in Position where delivery began when the lease was
// taken (not where this unit begins). A handler that keeps what it learned
// across units can tell from the generation that no other process
// committed in between: another owner's commits need a newer one. A zero
// Position does not mean the handler has seen every event before its own:
// see SkipsCarried.
func LeaseFromContext(ctx context.Context) (Lease, bool) {
	d, ok := ctx.Value(leaseKey{}).(delivery)
	return d.lease, ok
}

// SkipsCarried reports whether the delivery a handler's unit belongs to
// skips events that the partitions of its processor's previous partition
// count handled (ProcessorConfig.Partitions changed: the new partitions
// carry the old ones' positions over). What the handlers did for those
// events is there, though this delivery never hands them over, even when
// it began at the start of the feed. Once a processor's count has changed
// it stays true for that processor's partitions. Outside a delivery it
// returns false.
func SkipsCarried(ctx context.Context) bool {
	d, _ := ctx.Value(leaseKey{}).(delivery)
	return d.skipsCarried
}

func contextWithDelivery(ctx context.Context, l Lease, skipsCarried bool) context.Context {
	return context.WithValue(ctx, leaseKey{}, delivery{lease: l, skipsCarried: skipsCarried})
}

// withoutUnit hides the unit ctx carries, so a wait made with it is not
// refused as a wait inside a unit: the gate runs before the unit is used,
// so it holds nothing.
func withoutUnit(ctx context.Context) context.Context {
	return events.ContextWithUnit(ctx, nil)
}

package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// target is one saga's handler for a message.
type target struct {
	saga *compiled
	h    *handlerDef // for a timer without an OnTimeout handler: one with a nil run
}

// route decodes env and returns the handlers it goes to. Dispatch is by the
// decoded Go type, so stored aliases reach the same handlers.
func (e *Engine) route(env events.Envelope) ([]target, any, error) {
	v, err := e.reg.Decode(env)
	if errors.Is(err, events.ErrUnknownType) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("saga: event %s: %w", env.ID, err)
	}
	if tf, ok := v.(TimerFired); ok {
		s, ok := e.sagas[tf.Saga]
		if !ok {
			return nil, nil, nil
		}
		h := s.timeouts[tf.Name]
		if h == nil {
			h = &handlerDef{timeout: tf.Name}
		}
		return []target{{saga: s, h: h}}, v, nil
	}
	var out []target
	t := reflect.TypeOf(v)
	for _, s := range e.byType[t] {
		out = append(out, target{saga: s, h: s.byType[t]})
	}
	return out, v, nil
}

// key returns the instance id a message is for.
func (t target) key(v any, env events.Envelope) (string, error) {
	if tf, ok := v.(TimerFired); ok {
		return tf.ID, nil
	}
	return correlateSafely(t.saga.name, t.h, v, env)
}

// Handle is the engine's handler: run it on feed.Processor (partitioned by
// PartitionKey, filtered to Types, gated by Gate). It runs the step of every
// saga the event is for, in the unit of work the context carries, and
// returns an error only when the unit must roll back: an undecodable event,
// a correlation that fails, a storage error.
func (e *Engine) Handle(ctx context.Context, env events.Envelope) error {
	eu, ok := events.UnitFromContext(ctx)
	if !ok {
		return ErrNoUnit
	}
	u, ok := eu.(feed.Unit)
	if !ok {
		return fmt.Errorf("%w: the unit is a %T, not a feed.Unit", ErrNoUnit, eu)
	}
	targets, v, err := e.routeOnce(ctx, env)
	if err != nil {
		e.metrics.BadInput.WithLabelValues("decode").Inc()
		e.log.ErrorContext(ctx, "saga: cannot decode event", "event_id", env.ID, "type", env.Type, "schema_version", env.SchemaVersion, "error", err)
		return err
	}
	if len(targets) == 0 {
		return nil
	}
	g, err := e.gateOutcome(ctx, env, targets, v)
	if err != nil {
		return err
	}
	// After the gate: at the head of a unit the gate may wait, and must do
	// so before anything begins the unit's transaction, which the
	// prefetch does.
	if err := e.prefetch(ctx, u, routed{eventID: env.ID, targets: targets, v: v}); err != nil {
		return err
	}
	for _, t := range targets {
		if err := e.deliver(ctx, u, t, env, v, g); err != nil {
			return err
		}
	}
	return nil
}

// deliver takes one message for one saga from the feed.
func (e *Engine) deliver(ctx context.Context, u feed.Unit, t target, env events.Envelope, v any, g gateOutcome) error {
	s := t.saga
	id, err := t.key(v, env)
	if err != nil {
		e.metrics.BadInput.WithLabelValues("correlation").Inc()
		e.log.ErrorContext(ctx, "saga: cannot route event", "saga", s.name, "event_id", env.ID, "type", env.Type, "error", err)
		return err
	}
	rows := u.Rows()
	in, found, err := e.load(ctx, rows, s.name, id, feed.LockUpdate)
	if err != nil {
		return err
	}
	if !found && !t.h.start && len(feed.UnitEvents(ctx)) > 1 {
		// The absence may be what the head of the unit read for all its
		// events, before the steps ahead of this one ran: another unit may
		// have started the instance since, and a message ignored now would
		// never reach it (its start adopted the ignored messages it could
		// see). Look again, as a step alone in its unit would.
		if err := rows.Prefetch(ctx, feed.LockUpdate, feed.RowAddress{Namespace: rowNamespace, Table: tableInstance, Key: instanceKey(s.name, id)}); err != nil {
			return wrapRows(err, "read instance", s.name, id)
		}
		if in, found, err = e.load(ctx, rows, s.name, id, feed.LockUpdate); err != nil {
			return err
		}
	}
	if found && e.mayHaveTaken(in, env) {
		if done, err := e.duplicate(ctx, u, s.name, id, env); err != nil || done {
			return err
		}
	}
	if !found {
		// A locked read of a missing row locks nothing on PostgreSQL, so
		// two units could both start the instance; and a unit ignoring a
		// message for want of it could commit its record after a
		// concurrent start listed the ignored messages to adopt, so that a
		// redelivery would run the handler the first delivery skipped.
		// Claiming the id first orders this unit with any start of the
		// same id (its write of the same claim row blocks), and the
		// instance is read again after the wait.
		key := instanceKey(s.name, id)
		if err := rows.Put(ctx, rowNamespace, tableClaims, key, json.RawMessage(`{}`), env.Token); err != nil {
			return wrapRows(err, "claim instance id", s.name, id)
		}
		// A unit may hold its writes until commit; a locked read of the
		// claim row sends this one now, which is where the wait happens,
		// and the instance is read again after it, in the same round trip.
		if err := rows.Prefetch(ctx, feed.LockUpdate,
			feed.RowAddress{Namespace: rowNamespace, Table: tableClaims, Key: key},
			feed.RowAddress{Namespace: rowNamespace, Table: tableInstance, Key: key}); err != nil {
			return wrapRows(err, "claim instance id", s.name, id)
		}
		if in, found, err = e.load(ctx, rows, s.name, id, feed.LockUpdate); err != nil {
			return err
		}
		if found {
			// Another unit started it while this one waited on the claim:
			// this delivery may be its duplicate.
			if done, err := e.duplicate(ctx, u, s.name, id, env); err != nil || done {
				return err
			}
		}
	}
	if !found {
		if !t.h.start {
			return e.ignoreMissing(ctx, rows, s.name, id, env)
		}
		in = e.newInstance(s, id, env.ID)
		if err := e.adoptIgnored(ctx, rows, in); err != nil {
			return err
		}
	}
	if in.blocked() {
		return e.enqueue(ctx, rows, in, env)
	}
	return e.apply(ctx, u, t, in, env, v, g, nil)
}

// routed is an event's route, as the head of its unit worked it out.
type routed struct {
	eventID string
	targets []target
	v       any
	err     error
}

// unitRoutes keeps the routes the head of a unit worked out for all its
// events, for their own deliveries: each event is decoded once. A unit is
// known by the address of its first event (feed.UnitEvents), which any
// unit has, whatever type a store gives its units. An entry goes when the
// unit's last event takes it; a unit rolled back before then leaves its
// entry, so the map is emptied when it grows past maxUnitRoutes.
type unitRoutes struct {
	mu sync.Mutex
	m  map[*events.Envelope][]routed
}

const maxUnitRoutes = 256

func (r *unitRoutes) put(unit *events.Envelope, rs []routed) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil || len(r.m) >= maxUnitRoutes {
		r.m = map[*events.Envelope][]routed{}
	}
	r.m[unit] = rs
}

func (r *unitRoutes) take(unit *events.Envelope, i int, eventID string) (routed, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rs := r.m[unit]
	if i >= len(rs) || rs[i].eventID != eventID {
		return routed{}, false
	}
	if i == len(rs)-1 {
		delete(r.m, unit)
	}
	return rs[i], true
}

// duplicate reports whether the instance saga/id has handled env already,
// counting the delivery as a duplicate when it has.
func (e *Engine) duplicate(ctx context.Context, u feed.Unit, saga, id string, env events.Envelope) (bool, error) {
	done, err := e.handled(ctx, u.Rows(), saga, id, env.ID)
	if err == nil && done {
		u.AfterCommit(func() { e.metrics.Duplicates.WithLabelValues(saga).Inc() })
	}
	return done, err
}

// routeOnce routes env, or takes the route the head of its unit worked
// out for it.
func (e *Engine) routeOnce(ctx context.Context, env events.Envelope) ([]target, any, error) {
	if evs := feed.UnitEvents(ctx); len(evs) > 1 {
		if r, ok := e.routes.take(&evs[0], feed.UnitIndex(ctx), env.ID); ok {
			return r.targets, r.v, r.err
		}
	}
	return e.route(env)
}

// prefetch, at the head of a unit of several events, routes the others
// (head is the head's route) and reads their instance rows in one
// statement, locked as each step's
// own read would lock its instance: their steps then read them without a
// round trip each, and are not decoded again (routeOnce).
func (e *Engine) prefetch(ctx context.Context, u feed.Unit, head routed) error {
	evs := feed.UnitEvents(ctx)
	if len(evs) < 2 || feed.UnitIndex(ctx) != 0 {
		return nil
	}
	rs := make([]routed, len(evs))
	rs[0] = head
	addrs := make([]feed.RowAddress, 0, len(evs))
	seen := make(map[string]struct{}, len(evs))
	for j, ev := range evs {
		r := &rs[j]
		if j > 0 {
			r.eventID = ev.ID
			if r.targets, r.v, r.err = e.route(ev); r.err != nil {
				continue // its own delivery reports it
			}
		}
		for _, t := range r.targets {
			id, err := t.key(r.v, ev)
			if err != nil {
				continue
			}
			a := feed.RowAddress{Namespace: rowNamespace, Table: tableInstance, Key: instanceKey(t.saga.name, id)}
			if _, dup := seen[a.Key]; dup || feed.ValidateRowAddress(a.Namespace, a.Table, a.Key) != nil {
				continue
			}
			seen[a.Key] = struct{}{}
			addrs = append(addrs, a)
		}
	}
	if err := u.Rows().Prefetch(ctx, feed.LockUpdate, addrs...); err != nil {
		return fmt.Errorf("saga: read the instances of a unit's %d events: %w", len(evs), err)
	}
	e.routes.put(&evs[0], rs)
	return nil
}

// mayHaveTaken reports whether the instance may already have taken env, so
// that the handled record must be looked up. A running instance's causal
// token covers every message it has taken (steps and finish raise it), so
// a message after it is new: most steps save the lookup. Messages queued
// behind a parked or failed step do not raise it, nor does anything taken
// after the instance ended, so those always look.
func (e *Engine) mayHaveTaken(in *instance, env events.Envelope) bool {
	return in.blocked() || in.ended() || !env.Token.After(in.Token)
}

func (e *Engine) newInstance(s *compiled, id, origin string) *instance {
	now := e.cfg.Clock.Now().UTC()
	return &instance{Saga: s.name, ID: id, Origin: origin, Status: StatusRunning, StateVersion: s.cfg.stateVersion, Created: now, Updated: now}
}

// adoptIgnored makes the messages ignored for the id before its instance
// started (an On event that overtook the start, in another partition)
// count as taken by the new instance: without it, a redelivery of one
// finds no handled record and runs the handler the first delivery
// skipped, so a duplicate would not be a no-op. Raising the token to
// theirs makes deliver look their handled records up (mayHaveTaken). It
// costs one prefix scan per instance start, which finds nothing unless
// messages overtook it.
func (e *Engine) adoptIgnored(ctx context.Context, rows feed.Rows, in *instance) error {
	prefix := instanceKey(in.Saga, in.ID) + "/"
	recs, err := listAll(ctx, rows, tableIgnored, prefix)
	if err != nil {
		return err
	}
	for _, r := range recs {
		in.Token = in.Token.Max(r.Token)
	}
	for _, r := range recs {
		if err := e.markHandled(ctx, rows, in, strings.TrimPrefix(r.Key, prefix), false); err != nil {
			return err
		}
	}
	return nil
}

package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"

	"github.com/converge-es/converge/command"
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
	sender := ""
	if _, ok := v.(command.Rejected); ok {
		// A rejection answers the saga type that sent the command: another
		// type's instance of the same id must not take it for its own.
		sender = env.Metadata.Extra[command.MetaSender]
	}
	for _, s := range e.byType[t] {
		if sender != "" && s.name != sender {
			continue
		}
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
	r := e.routeOnce(ctx, env)
	if r.err != nil {
		e.metrics.BadInput.WithLabelValues("decode").Inc()
		e.log.ErrorContext(ctx, "saga: cannot decode event", "event_id", env.ID, "type", env.Type, "schema_version", env.SchemaVersion, "error", r.err)
		return r.err
	}
	if len(r.targets) == 0 {
		return nil
	}
	g, err := e.gateOutcome(ctx, env, r.targets, r.v)
	if err != nil {
		return err
	}
	// After the gate: at the head of a unit the gate may wait, and must do
	// so before anything begins the unit's transaction, which the
	// prefetch does.
	if err := e.prefetch(ctx, u, env, &r); err != nil {
		return err
	}
	for _, t := range r.targets {
		if err := e.deliver(ctx, u, t, env, r.v, g, r.claims); err != nil {
			return err
		}
	}
	return nil
}

// deliver takes one message for one saga from the feed. uc holds the ids
// of the unit's instances its head found absent, which the unit claims
// together (nil when the head claims nothing for the unit).
func (e *Engine) deliver(ctx context.Context, u feed.Unit, t target, env events.Envelope, v any, g gateOutcome, uc *unitClaims) error {
	s := t.saga
	id, err := t.key(v, env)
	if err != nil {
		e.metrics.BadInput.WithLabelValues("correlation").Inc()
		e.log.ErrorContext(ctx, "saga: cannot route event", "saga", s.name, "event_id", env.ID, "type", env.Type, "error", err)
		return err
	}
	rows := u.Rows()
	key := instanceKey(s.name, id)
	in, found, err := e.load(ctx, rows, s.name, id, feed.LockUpdate)
	if err != nil {
		return err
	}
	together := !found && uc.has(key)
	if !found && !together && !t.h.start && len(feed.UnitEvents(ctx)) > 1 {
		// The absence may be what the head of the unit read for all its
		// events, before the steps ahead of this one ran: another unit may
		// have started the instance since, and a message ignored now would
		// never reach it (its start adopted the ignored messages it could
		// see). Look again, as a step alone in its unit would. (The claims
		// taken together read the instances again after them.)
		if err := rows.Prefetch(ctx, feed.LockUpdate, feed.RowAddress{Namespace: rowNamespace, Table: tableInstance, Key: key}); err != nil {
			return wrapRows(err, "read instance", s.name, id)
		}
		if in, found, err = e.load(ctx, rows, s.name, id, feed.LockUpdate); err != nil {
			return err
		}
	}
	if together {
		if err := e.claimTogether(ctx, rows, uc); err != nil {
			return err
		}
		if in, found, err = e.load(ctx, rows, s.name, id, feed.LockUpdate); err != nil {
			return err
		}
	}
	if found && (uc.startedElsewhere(key) || e.mayHaveTaken(in, env)) {
		// An instance another unit started while the claims were waited
		// for may have taken this delivery, as after the claim below.
		if done, err := e.duplicate(ctx, u, s.name, id, env); err != nil || done {
			return err
		}
	}
	if !found && !together {
		// A locked read of a missing row locks nothing on PostgreSQL, so
		// two units could both start the instance; and a unit ignoring a
		// message for want of it could commit its record after a
		// concurrent start listed the ignored messages to adopt, so that a
		// redelivery would run the handler the first delivery skipped.
		// Claiming the id first orders this unit with any start of the
		// same id (its write of the same claim row blocks), and the
		// instance is read again after the wait.
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
	// claims are the ids the unit claims together (shared by its events).
	claims *unitClaims
}

// unitClaims are the ids (instance keys) of a unit's instances that its
// head found absent, with the token of the first of its events for each.
// The first of the unit's messages that must claim one of them claims them
// all (claimTogether).
type unitClaims struct {
	toks  map[string]events.Token
	taken bool
	// started are the ids whose instance another unit had started by the
	// time the claims were taken.
	started map[string]bool
}

func (uc *unitClaims) has(key string) bool {
	if uc == nil {
		return false
	}
	_, ok := uc.toks[key]
	return ok
}

func (uc *unitClaims) startedElsewhere(key string) bool { return uc != nil && uc.started[key] }

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
func (e *Engine) routeOnce(ctx context.Context, env events.Envelope) routed {
	if evs := feed.UnitEvents(ctx); len(evs) > 1 {
		if r, ok := e.routes.take(&evs[0], feed.UnitIndex(ctx), env.ID); ok {
			return r
		}
	}
	targets, v, err := e.route(env)
	return routed{eventID: env.ID, targets: targets, v: v, err: err}
}

// prefetch, at the head of a unit of several events (or of an event for
// several sagas), routes the others (head is the head's route) and reads
// their instance rows in one statement, locked as each step's own read
// would lock its instance: their steps then read them without a round trip
// each, and are not decoded again (routeOnce). The instances it finds
// absent are the unit's to claim together (head.claims).
func (e *Engine) prefetch(ctx context.Context, u feed.Unit, env events.Envelope, head *routed) error {
	if feed.UnitIndex(ctx) != 0 {
		return nil
	}
	evs := feed.UnitEvents(ctx)
	if len(evs) < 2 {
		if len(head.targets) < 2 {
			return nil // one instance: its step reads and claims it by itself, as cheaply
		}
		evs = []events.Envelope{env}
	}
	rs := make([]routed, len(evs))
	rs[0] = *head
	addrs := make([]feed.RowAddress, 0, len(evs))
	toks := make(map[string]events.Token, len(evs))
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
			if _, dup := toks[a.Key]; dup || feed.ValidateRowAddress(a.Namespace, a.Table, a.Key) != nil {
				continue
			}
			toks[a.Key] = ev.Token
			addrs = append(addrs, a)
		}
	}
	rows := u.Rows()
	if err := rows.Prefetch(ctx, feed.LockUpdate, addrs...); err != nil {
		return fmt.Errorf("saga: read the instances of a unit's %d events: %w", len(evs), err)
	}
	for _, a := range addrs {
		_, found, err := rows.Get(ctx, a.Namespace, a.Table, a.Key, feed.LockUpdate) // answered by the prefetch
		if err != nil {
			return fmt.Errorf("saga: read instance %s: %w", a.Key, err)
		}
		if found {
			delete(toks, a.Key)
		}
	}
	if len(toks) > 0 {
		head.claims = &unitClaims{toks: toks}
	}
	if len(evs) > 1 {
		for j := range rs {
			rs[j].claims = head.claims
		}
		e.routes.put(&evs[0], rs)
	}
	return nil
}

// claimTogether claims every id of uc at once, unless the unit has done so
// already, and reads their instances again after the claims, as deliver
// does for a step alone in its unit. Claimed one message at a time, in
// the order the messages came, two units claiming the same ids in other
// orders (partitions whose streams correlate to the same instances) could
// each hold one and wait for the other's, and PostgreSQL would abort one
// of them as deadlocked; claimed together they go in one statement, in
// key order (the store sends a unit's held writes sorted), and one unit
// waits for the other. They are taken at the first message that needs
// one, not at the head, so that an instance started elsewhere while the
// steps ahead of it ran is found, and its start not held up by them.
func (e *Engine) claimTogether(ctx context.Context, rows feed.Rows, uc *unitClaims) error {
	if uc.taken {
		return nil
	}
	// The instances first, holding no claim yet: one started elsewhere
	// since the head read may be locked by a unit (whose head found it)
	// that is about to claim ids this unit claims. Waiting for it while
	// holding those claims would deadlock; without them it only waits.
	inst := make([]feed.RowAddress, 0, len(uc.toks))
	for key := range uc.toks {
		inst = append(inst, feed.RowAddress{Namespace: rowNamespace, Table: tableInstance, Key: key})
	}
	if err := rows.Prefetch(ctx, feed.LockUpdate, inst...); err != nil {
		return fmt.Errorf("saga: read the instances of %d ids to claim: %w", len(uc.toks), err)
	}
	reads := make([]feed.RowAddress, 0, 2*len(uc.toks))
	for key, tok := range uc.toks {
		if err := rows.Put(ctx, rowNamespace, tableClaims, key, json.RawMessage(`{}`), tok); err != nil {
			return fmt.Errorf("saga: claim instance id %s: %w", key, err)
		}
		reads = append(reads, feed.RowAddress{Namespace: rowNamespace, Table: tableClaims, Key: key},
			feed.RowAddress{Namespace: rowNamespace, Table: tableInstance, Key: key})
	}
	// The locked read of the claims sends them, and waits for any unit
	// holding one; the instances are read again after it.
	if err := rows.Prefetch(ctx, feed.LockUpdate, reads...); err != nil {
		return fmt.Errorf("saga: claim the ids of %d instances: %w", len(uc.toks), err)
	}
	for key := range uc.toks {
		_, found, err := rows.Get(ctx, rowNamespace, tableInstance, key, feed.LockUpdate)
		if err != nil {
			return fmt.Errorf("saga: read instance %s: %w", key, err)
		}
		if found {
			if uc.started == nil {
				uc.started = map[string]bool{}
			}
			uc.started[key] = true
		}
	}
	uc.taken = true
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

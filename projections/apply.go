package projections

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// applier is the feed.Handler of one projection processor: the live one
// (rebuild 0), which writes whatever generation is active, or a rebuild's,
// which writes generation rebuild while it is being built.
type applier struct {
	r       *Runner
	proj    *compiled
	rebuild int
	// stale is called when a rebuild's handler finds its generation is no
	// longer being built (switched or abandoned).
	stale func()
	// gen records the generation the live processor last wrote.
	gen *atomic.Int64

	mu sync.Mutex
	// last remembers, per partition, the unit and token of the last event
	// applied: a second run of the same event in the same unit (Watermill's
	// Duplicator middleware, a retry middleware) is not applied twice. A
	// redelivery in a new unit is a new attempt, whose earlier writes were
	// rolled back.
	last map[int]appliedMark
	// states caches, per partition, the state row its current unit read.
	states map[int]stateOf
	// caches holds, per partition, a rebuild unit's row cache.
	caches map[int]unitCache
	// knowledge holds, per partition, what a rebuild knows of its rows
	// across units (rebuild_cache.go).
	knowledge map[int]*knownRows
}

type appliedMark struct {
	unit feed.Unit
	tok  events.Token
}

// cacheOf returns the row cache of a rebuild's unit in partition slot.
// A failed handler's writes roll back with the unit, and the next attempt
// runs in a new unit, so it starts with a new cache.
func (a *applier) cacheOf(slot int, u feed.Unit) map[rowKey]cachedRow {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.caches[slot]
	if !ok || c.unit != u {
		c = unitCache{unit: u, rows: map[rowKey]cachedRow{}}
		if a.caches == nil {
			a.caches = map[int]unitCache{}
		}
		a.caches[slot] = c
	}
	return c.rows
}

type unitCache struct {
	unit feed.Unit
	rows map[rowKey]cachedRow
}

// stateOf is the state row as a unit read it: taken with LockShare once
// per unit (the lock holds until the unit ends), not once per event.
type stateOf struct {
	unit feed.Unit
	st   state
}

func (a *applier) state(ctx context.Context, slot int, u feed.Unit) (state, error) {
	a.mu.Lock()
	c, ok := a.states[slot]
	a.mu.Unlock()
	if ok && c.unit == u {
		return c.st, nil
	}
	st, err := mustState(ctx, u.Rows(), a.proj.name, feed.LockShare)
	if err != nil {
		return state{}, err
	}
	a.mu.Lock()
	if a.states == nil {
		a.states = map[int]stateOf{}
	}
	a.states[slot] = stateOf{unit: u, st: st}
	a.mu.Unlock()
	return st, nil
}

// errNoUnit is returned when a handler context carries no feed.Unit: the
// processor always gives one, so it is a wiring bug.
var errNoUnit = errors.New("projections: the delivery carries no feed.Unit (run projections through a Runner)")

func unitOf(ctx context.Context) (feed.Unit, error) {
	u, ok := events.UnitFromContext(ctx)
	if !ok {
		return nil, errNoUnit
	}
	fu, ok := u.(feed.Unit)
	if !ok {
		return nil, errNoUnit
	}
	return fu, nil
}

// handle applies env to the generation this processor writes, in the
// delivery's unit.
func (a *applier) handle(ctx context.Context, env events.Envelope) error {
	u, err := unitOf(ctx)
	if err != nil {
		return err
	}
	h := a.proj.handler(env.Type)
	if h == nil {
		return nil // not ours (the store filters by type; aliases added later land here)
	}
	slot := a.r.partitionOf(a.proj, env)
	st, err := a.state(ctx, slot, u)
	if err != nil {
		return err
	}
	gen := st.Active
	if a.rebuild == 0 {
		a.gen.Store(int64(gen))
		if !env.Token.After(st.SkipTo) {
			return nil // the rebuild that became this generation applied it
		}
		if feed.Marked(env, a.proj.name) && env.Token.After(st.MarksUpTo) {
			return nil // the append hook applied it
		}
	} else {
		if st.Building != a.rebuild {
			if a.stale != nil {
				a.stale()
			}
			return nil
		}
		gen = a.rebuild
	}
	if a.seen(slot, u, env.Token) {
		return nil
	}
	rows := &unitRows{rows: u.Rows(), ns: rowNamespace(a.proj.name, gen), tok: env.Token}
	if a.rebuild != 0 {
		rows.cache = a.cacheOf(slot, u)
		lease, ok := feed.LeaseFromContext(ctx)
		rows.known = a.known(lease, ok, feed.SkipsCarried(ctx), slot, u, rows.cache)
	}
	tx := &Tx{ctx: ctx, projection: a.proj.name, generation: gen, token: env.Token, rows: rows}
	if err := callHandler(ctx, h, tx, env); err != nil {
		return handlerError(a.proj.name, env, err)
	}
	a.mark(slot, u, env.Token)
	if a.rebuild == 0 && a.r.cfg.OnUpdate != nil && len(tx.updates) > 0 {
		updates := tx.updates
		u.AfterCommit(func() {
			for _, up := range updates {
				a.r.cfg.OnUpdate(up)
			}
		})
	}
	return nil
}

func (a *applier) seen(slot int, u feed.Unit, tok events.Token) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	m, ok := a.last[slot]
	return ok && m.unit == u && !tok.After(m.tok)
}

func (a *applier) mark(slot int, u feed.Unit, tok events.Token) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.last == nil {
		a.last = map[int]appliedMark{}
	}
	a.last[slot] = appliedMark{unit: u, tok: tok}
}

// handlerError wraps a handler's error with where it happened.
func handlerError(name string, env events.Envelope, err error) error {
	return fmt.Errorf("projections: %q: event %s (%s, stream %q v%d): %w", name, env.ID, env.Type, env.StreamID, env.Version, err)
}

// callHandler runs a handler, turning a panic into an error so a panic
// counts as a failed attempt instead of crashing the process.
func callHandler(ctx context.Context, h handlerFunc, tx *Tx, env events.Envelope) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("projections: handler for %q panicked: %v\n%s", env.Type, r, debug.Stack())
		}
	}()
	return h(ctx, tx, env)
}

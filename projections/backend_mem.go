package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strings"
	"sync"
	"weak"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
)

// memStates holds the read models of every memstore in the process, so a
// Runner started again on the same store (a restart, in tests) finds its
// read models, watermarks and dead letters where the last one left them,
// as it would on PostgreSQL. An entry goes away with its store.
var memStates = struct {
	mu sync.Mutex
	m  map[weak.Pointer[memstore.Store]]*memState
}{m: map[weak.Pointer[memstore.Store]]*memState{}}

func memStateFor(s *memstore.Store) *memState {
	key := weak.Make(s)
	memStates.mu.Lock()
	defer memStates.mu.Unlock()
	if st, ok := memStates.m[key]; ok {
		return st
	}
	st := &memState{projs: map[string]*memProj{}}
	memStates.m[key] = st
	runtime.AddCleanup(s, func(k weak.Pointer[memstore.Store]) {
		memStates.mu.Lock()
		delete(memStates.m, k)
		memStates.mu.Unlock()
	}, key)
	return st
}

// memState is the in-memory twin of the projection tables. mu guards
// everything; handlers run outside it (their writes are staged) except for
// strong projections applied inline, which run under it.
type memState struct {
	mu     sync.RWMutex
	projs  map[string]*memProj
	nextDL int64
}

type memProj struct {
	class       consistency.Class
	active      int
	building    int
	gens        map[int]*memGen
	deadLetters []DeadLetter
}

type memGen struct {
	applied       events.Token
	status        State
	haltedReason  string
	haltedEventID string
	// markers are events applied inline whose feed position the consumer
	// has not passed yet, by event id.
	markers map[string]events.Token
	tables  map[string]map[string]memRow
}

type memRow struct {
	value json.RawMessage
	tok   events.Token
}

func newMemGen() *memGen {
	return &memGen{status: StateRunning, markers: map[string]events.Token{}, tables: map[string]map[string]memRow{}}
}

// maxApplied is the latest event the generation reflects, through the feed
// or inline.
func (g *memGen) maxApplied() events.Token {
	m := g.applied
	for _, t := range g.markers {
		m = m.Max(t)
	}
	return m
}

// memBackend is the backend over a memstore.Store.
type memBackend struct {
	store *memstore.Store
	st    *memState
	clock events.Clock
}

func newMemBackend(s *memstore.Store, clock events.Clock) *memBackend {
	return &memBackend{store: s, st: memStateFor(s), clock: clock}
}

func (b *memBackend) appliesAtCommit() bool { return false }

// proj returns name's state; the caller holds st.mu.
func (b *memBackend) proj(name string) (*memProj, error) {
	p := b.st.projs[name]
	if p == nil {
		return nil, fmt.Errorf("%w: %q", ErrNotRegistered, name)
	}
	return p, nil
}

func (b *memBackend) register(_ context.Context, ps []*compiled) error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	for _, c := range ps {
		p := b.st.projs[c.name]
		if p == nil {
			p = &memProj{active: 1, gens: map[int]*memGen{1: newMemGen()}}
			b.st.projs[c.name] = p
		}
		p.class = c.class
	}
	return nil
}

func (b *memBackend) sweep(_ context.Context, name string) error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	p, err := b.proj(name)
	if err != nil {
		return err
	}
	for g := range p.gens {
		if g != p.active && g != p.building {
			delete(p.gens, g)
		}
	}
	return nil
}

// target is the generation a consumer writes, or stale for a rebuild
// generation that is no longer building. The caller holds st.mu.
func (p *memProj) target(rebuildGen int) (gen int, stale bool) {
	if rebuildGen == 0 {
		return p.active, false
	}
	return rebuildGen, p.building != rebuildGen
}

func (b *memBackend) apply(ctx context.Context, a applyArgs) (applyResult, error) {
	for {
		// Decide under the read lock, run the handler on staged writes
		// without any lock, then commit under the write lock if nothing
		// changed meanwhile (a switch, another consumer applying the same
		// event after a lease takeover, an inline apply).
		b.st.mu.RLock()
		p, err := b.proj(a.proj.name)
		if err != nil {
			b.st.mu.RUnlock()
			return applyResult{}, err
		}
		gen, stale := p.target(a.rebuildGen)
		if stale {
			b.st.mu.RUnlock()
			return applyResult{gen: gen, stale: true}, nil
		}
		g := p.gens[gen]
		if g.status == StateHalted {
			b.st.mu.RUnlock()
			return applyResult{gen: gen}, errGenHalted
		}
		_, marked := g.markers[a.env.ID]
		fresh := a.env.Token.After(g.applied)
		needed := a.handler != nil && fresh && !marked
		b.st.mu.RUnlock()
		if !fresh && !a.checkSwitch {
			return applyResult{gen: gen}, nil // applied before: a replay or a duplicate
		}

		var tx *Tx
		var rows *memTxRows
		if needed {
			rows = &memTxRows{st: b.st, proj: a.proj.name, gen: gen, tok: a.env.Token}
			tx = &Tx{projection: a.proj.name, generation: gen, token: a.env.Token, rows: rows}
			if err := callHandler(ctx, a.handler, tx, a.env); err != nil {
				return applyResult{gen: gen}, err
			}
		}

		b.st.mu.Lock()
		res, retry, err := b.commitApply(a, gen, needed, rows, tx)
		b.st.mu.Unlock()
		if !retry {
			return res, err
		}
		if err := ctx.Err(); err != nil {
			return applyResult{gen: gen}, err
		}
	}
}

// commitApply is apply's second half, under the write lock. retry is true
// when what the first half decided no longer holds.
func (b *memBackend) commitApply(a applyArgs, gen int, ran bool, rows *memTxRows, tx *Tx) (applyResult, bool, error) {
	p := b.st.projs[a.proj.name]
	if now, stale := p.target(a.rebuildGen); stale {
		return applyResult{gen: now, stale: true}, false, nil
	} else if now != gen {
		return applyResult{}, true, nil // switched meanwhile: apply to the new generation
	}
	g := p.gens[gen]
	if g.status == StateHalted {
		return applyResult{gen: gen}, false, errGenHalted
	}
	res := applyResult{gen: gen}
	if a.env.Token.After(g.applied) {
		_, marked := g.markers[a.env.ID]
		switch {
		case marked:
			delete(g.markers, a.env.ID)
		case a.handler == nil:
		case !ran:
			return applyResult{}, true, nil // the marker vanished: apply after all
		default:
			rows.commit(g)
			res.applied = true
			res.updates = tx.updates
		}
		if a.handler != nil || marked {
			g.applied = a.env.Token
		}
	}
	if a.checkSwitch && a.rebuildGen != 0 {
		live := p.gens[p.active]
		if !live.maxApplied().After(a.env.Token) {
			g.applied = g.applied.Max(a.env.Token)
			res.oldGen = p.active
			p.active, p.building = gen, 0
			delete(p.gens, res.oldGen)
			res.switched = true
		}
	}
	return res, false, nil
}

func (b *memBackend) deadLetter(_ context.Context, a applyArgs, reason string, attempts int) (DeadLetter, bool, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	p, err := b.proj(a.proj.name)
	if err != nil {
		return DeadLetter{}, false, err
	}
	gen, stale := p.target(a.rebuildGen)
	if stale {
		return DeadLetter{}, false, nil
	}
	g := p.gens[gen]
	if !a.env.Token.After(g.applied) {
		return DeadLetter{}, false, nil
	}
	b.st.nextDL++
	dl := DeadLetter{
		ID:         b.st.nextDL,
		Projection: a.proj.name,
		Generation: gen,
		EventID:    a.env.ID,
		StreamID:   a.env.StreamID,
		Version:    a.env.Version,
		Token:      a.env.Token,
		Type:       a.env.Type,
		Payload:    append(json.RawMessage(nil), a.env.Payload...),
		Reason:     reason,
		Attempts:   attempts,
		CreatedAt:  b.clock.Now(),
	}
	p.deadLetters = append(p.deadLetters, dl)
	g.applied = a.env.Token
	return dl, true, nil
}

func (b *memBackend) halt(_ context.Context, name string, gen int, eventID, reason string) error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	p, err := b.proj(name)
	if err != nil {
		return err
	}
	if g := p.gens[gen]; g != nil {
		g.status, g.haltedReason, g.haltedEventID = StateHalted, reason, eventID
	}
	return nil
}

func (b *memBackend) running(_ context.Context, name string, rebuildGen int) (bool, error) {
	b.st.mu.RLock()
	defer b.st.mu.RUnlock()
	p, err := b.proj(name)
	if err != nil {
		return false, err
	}
	gen, stale := p.target(rebuildGen)
	return stale || p.gens[gen].status == StateRunning, nil
}

func (b *memBackend) resume(_ context.Context, name string) error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	p, err := b.proj(name)
	if err != nil {
		return err
	}
	for _, g := range p.gens {
		g.status, g.haltedReason, g.haltedEventID = StateRunning, "", ""
	}
	return nil
}

func (b *memBackend) status(_ context.Context, name string) (Status, error) {
	b.st.mu.RLock()
	defer b.st.mu.RUnlock()
	p, err := b.proj(name)
	if err != nil {
		return Status{}, err
	}
	g := p.gens[p.active]
	s := Status{
		Name: name, Class: p.class, Generation: p.active, State: g.status,
		HaltedReason: g.haltedReason, HaltedEventID: g.haltedEventID, Applied: g.applied,
	}
	if bg := p.gens[p.building]; p.building != 0 && bg != nil {
		s.Rebuild = &RebuildStatus{
			Generation: p.building, State: bg.status, HaltedReason: bg.haltedReason,
			HaltedEventID: bg.haltedEventID, Applied: bg.applied,
		}
	}
	return s, nil
}

func (b *memBackend) generations(_ context.Context, name string) (int, int, error) {
	b.st.mu.RLock()
	defer b.st.mu.RUnlock()
	p, err := b.proj(name)
	if err != nil {
		return 0, 0, err
	}
	return p.active, p.building, nil
}

func (b *memBackend) startRebuild(_ context.Context, name string) (int, bool, int, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	p, err := b.proj(name)
	if err != nil {
		return 0, false, 0, err
	}
	if p.building != 0 {
		return 0, false, 0, fmt.Errorf("%w: %q is building generation %d", ErrRebuildInProgress, name, p.building)
	}
	gen := max(p.active, slices.Max(slices.Collect(maps.Keys(p.gens)))) + 1
	p.gens[gen] = newMemGen()
	if p.gens[p.active].maxApplied().IsZero() {
		old := p.active
		p.active = gen
		delete(p.gens, old)
		return gen, true, old, nil
	}
	p.building = gen
	return gen, false, 0, nil
}

func (b *memBackend) reset(_ context.Context, name string, tok events.Token) error {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	p, err := b.proj(name)
	if err != nil {
		return err
	}
	g := p.gens[p.active]
	g.applied = tok
	g.status, g.haltedReason, g.haltedEventID = StateRunning, "", ""
	return nil
}

func (b *memBackend) reader(name string) rowStore { return &memViewRows{st: b.st, proj: name} }

func (b *memBackend) deadLetters(_ context.Context, name string) ([]DeadLetter, error) {
	b.st.mu.RLock()
	defer b.st.mu.RUnlock()
	p, err := b.proj(name)
	if err != nil {
		return nil, err
	}
	out := make([]DeadLetter, len(p.deadLetters))
	for i, dl := range p.deadLetters {
		dl.Payload = append(json.RawMessage(nil), dl.Payload...)
		out[i] = dl
	}
	return out, nil
}

// memTxRows stages a handler's writes over one generation; commit applies
// them. locked is set when the handler runs under st.mu (inline applies).
type memTxRows struct {
	st     *memState
	proj   string
	gen    int
	tok    events.Token
	locked bool
	staged map[string]map[string]*memRow // nil row: deleted
}

// committed returns the generation's table; the caller holds st.mu.
func (r *memTxRows) committed(table string) map[string]memRow {
	p := r.st.projs[r.proj]
	if p == nil {
		return nil
	}
	g := p.gens[r.gen]
	if g == nil {
		return nil
	}
	return g.tables[table]
}

func (r *memTxRows) rlock() func() {
	if r.locked {
		return func() {}
	}
	r.st.mu.RLock()
	return r.st.mu.RUnlock
}

func (r *memTxRows) get(_ context.Context, table, key string) (json.RawMessage, events.Token, bool, error) {
	if row, ok := r.staged[table][key]; ok {
		if row == nil {
			return nil, events.Token{}, false, nil
		}
		return row.value, row.tok, true, nil
	}
	unlock := r.rlock()
	defer unlock()
	row, ok := r.committed(table)[key]
	return row.value, row.tok, ok, nil
}

func (r *memTxRows) list(_ context.Context, table string, q listQuery) ([]Row, error) {
	unlock := r.rlock()
	merged := map[string]memRow{}
	for k, row := range r.committed(table) {
		if q.match(k) {
			merged[k] = row
		}
	}
	unlock()
	for k, row := range r.staged[table] {
		switch {
		case !q.match(k):
		case row == nil:
			delete(merged, k)
		default:
			merged[k] = *row
		}
	}
	return sortedRows(merged, q.limit), nil
}

func (r *memTxRows) put(_ context.Context, table, key string, value json.RawMessage) error {
	r.stage(table)[key] = &memRow{value: value, tok: r.tok}
	return nil
}

func (r *memTxRows) del(_ context.Context, table, key string) error {
	r.stage(table)[key] = nil
	return nil
}

func (r *memTxRows) stage(table string) map[string]*memRow {
	if r.staged == nil {
		r.staged = map[string]map[string]*memRow{}
	}
	t := r.staged[table]
	if t == nil {
		t = map[string]*memRow{}
		r.staged[table] = t
	}
	return t
}

// commit applies the staged writes to g; the caller holds st.mu.
func (r *memTxRows) commit(g *memGen) {
	for table, rows := range r.staged {
		t := g.tables[table]
		if t == nil {
			t = map[string]memRow{}
			g.tables[table] = t
		}
		for k, row := range rows {
			if row == nil {
				delete(t, k)
			} else {
				t[k] = *row
			}
		}
	}
}

// memViewRows reads the active generation.
type memViewRows struct {
	st   *memState
	proj string
}

func (r *memViewRows) rows(table string) map[string]memRow {
	p := r.st.projs[r.proj]
	if p == nil {
		return nil
	}
	return p.gens[p.active].tables[table]
}

func (r *memViewRows) get(_ context.Context, table, key string) (json.RawMessage, events.Token, bool, error) {
	r.st.mu.RLock()
	defer r.st.mu.RUnlock()
	row, ok := r.rows(table)[key]
	return row.value, row.tok, ok, nil
}

func (r *memViewRows) list(_ context.Context, table string, q listQuery) ([]Row, error) {
	r.st.mu.RLock()
	matched := map[string]memRow{}
	for k, row := range r.rows(table) {
		if q.match(k) {
			matched[k] = row
		}
	}
	r.st.mu.RUnlock()
	return sortedRows(matched, q.limit), nil
}

func (r *memViewRows) put(context.Context, string, string, json.RawMessage) error { return ErrReadOnly }

func (r *memViewRows) del(context.Context, string, string) error { return ErrReadOnly }

func sortedRows(m map[string]memRow, limit int) []Row {
	keys := slices.SortedFunc(maps.Keys(m), strings.Compare)
	if len(keys) > limit {
		keys = keys[:limit]
	}
	out := make([]Row, len(keys))
	for i, k := range keys {
		out[i] = Row{Key: k, Value: append(json.RawMessage(nil), m[k].value...), Token: m[k].tok}
	}
	return out
}

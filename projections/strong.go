package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// AppliedMetadataKey is the events.Metadata.Extra key under which the
// append hook records which strong projections applied an event in the
// append's own unit, as their names separated by spaces. The projection's
// processor moves past such an event without applying it again; a rebuild
// applies it from the feed like every other event.
//
// The mark needs no generation: an event applied in its append reached the
// generation active when it committed, and a switch to a newer generation
// only happens once the rebuild reflects every handled event committed
// before it (see Runner.Rebuild), which the live processor then moves past.
// It is the same on every retry of the append, so a retried append is
// recognised as the one stored (events.MatchStored compares metadata).
//
// The key is reserved: stores refuse an append that sets it
// (events.CheckReserved), and feed.Publisher drops it from the messages it
// stores.
const AppliedMetadataKey = feed.AppliedMarksKey

// strongHook applies the runner's strong projections inside every append
// made through the store (feed.HookedSource), in the append's unit: the
// rows commit with the events or not at all, and a read right after the
// append sees them.
type strongHook struct {
	r     *Runner
	projs []*compiled
}

var _ feed.AppendHook = (*strongHook)(nil)

func (h *strongHook) Wants(types []string) bool {
	for _, p := range h.projs {
		if p.handles(types) {
			return true
		}
	}
	return false
}

// Before takes each interested projection's state row with LockShare, so a
// rebuild's switch cannot slip between this append and its rows, and its
// lock row with LockUpdate, so that appends applying one projection do so
// one at a time: its handlers read rows and write them back, and two
// appends side by side (READ COMMITTED on PostgreSQL) would both read the
// row as it was, and the later commit would overwrite the earlier's
// effect. Concurrent appends wait on PostgreSQL, and in memory conflict
// and run again, as units do. It leaves unstamped an append a
// projection's processor is behind on (see behind), for After to refuse;
// otherwise it places the append after the last one applied under the
// lock (feed.MarkScanner.OrderAfter) and stamps the events each
// projection will apply.
func (h *strongHook) Before(ctx context.Context, u feed.Unit, streamID string, evs []events.Event) ([]events.Event, error) {
	reg := u.Registry()
	types := make([]string, len(evs))
	for i, ev := range evs {
		if raw, ok := ev.Data.(events.Raw); ok {
			types[i] = raw.Type
			continue
		}
		name, _, err := reg.NameOf(ev.Data)
		if err != nil {
			return nil, err // the append reports it as it would without the hook
		}
		types[i] = name
	}
	out := slices.Clone(evs)
	for _, p := range h.projs {
		if !p.handles(types) {
			continue
		}
		// The lock orders this append with a switch of generations.
		st, err := mustState(ctx, u.Rows(), p.name, feed.LockShare)
		if err != nil {
			return nil, err
		}
		lock, _, err := u.Rows().Get(ctx, feed.RuntimeNamespace, strongLockTable, p.name, feed.LockUpdate)
		if err != nil {
			return nil, fmt.Errorf("projections: take the lock of strong projection %q: %w", p.name, err)
		}
		ms, ok := u.(feed.MarkScanner)
		if !ok {
			return nil, fmt.Errorf("projections: strong projection %q: the store's units cannot tell which events its processor has still to apply (%T is no feed.MarkScanner)", p.name, u)
		}
		behind, err := h.behind(ctx, ms, p, st, streamID, out, types)
		if err != nil {
			return nil, err
		}
		if behind {
			// Unstamped, the events make After refuse the append; a retry
			// of one already stored reaches no After and is reported as
			// stored.
			continue
		}
		// Appends are applied in the order they take the lock: the feed
		// must have them in that order too.
		var last strongLock
		if err := json.Unmarshal(lock.Value, &last); err != nil {
			return nil, fmt.Errorf("projections: strong projection %q: its lock row does not decode: %w", p.name, err)
		}
		if !last.Last.IsZero() {
			if err := ms.OrderAfter(ctx, last.Last); err != nil {
				return nil, fmt.Errorf("projections: strong projection %q: %w", p.name, err)
			}
		}
		for i := range out {
			if p.handler(types[i]) == nil {
				continue
			}
			extra := maps.Clone(out[i].Metadata.Extra)
			if extra == nil {
				extra = map[string]string{}
			}
			extra[AppliedMetadataKey] = strings.TrimSpace(extra[AppliedMetadataKey] + " " + p.name)
			out[i].Metadata.Extra = extra
		}
	}
	return out, nil
}

// behindPages bounds behind's read: past that many pages of events its
// processor has still to apply, in other partitions than the append's,
// it is judged behind without reading further.
const (
	behindPageSize = 100
	behindPages    = 10
)

// behind reports whether p's live processor has still to apply events
// before this append in a partition the append's events fall in: after a
// Reset, until its replay passes MarksUpTo, and while events stored
// without the hook (before the Runner started, or by a process that does
// not run it) wait for it, or it is halted on one. Applied here, the
// append's events would come before those, and the processor would apply
// the older events after them and skip these (marked): rows written out
// of feed order, for good. Left to the processor unmarked, they would miss
// the strong handlers' checks. So such an append is refused
// (ErrStrongCatchingUp): Before leaves its events unstamped and After
// refuses it, unless it is a retry of an append already stored, which
// reaches no After and is reported as stored. The lock row that
// serialises strong appends is held, so no other strong append comes
// between this check and the commit; the processor only moves forward meanwhile (a Reset takes the
// state row, which this unit holds with LockShare).
func (h *strongHook) behind(ctx context.Context, ms feed.MarkScanner, p *compiled, st state, streamID string, evs []events.Event, types []string) (bool, error) {
	pos, err := ms.PositionsNow(ctx, p.checkpoints(p.name)...)
	if err != nil {
		return false, fmt.Errorf("projections: strong projection %q: read its processor's position: %w", p.name, err)
	}
	// at holds, for each partition the append's events fall in, what its
	// processor has applied: its checkpoint, or the switched-in rebuild's
	// position (it skips events up to it).
	at := map[int]events.Token{}
	var from events.Token
	for i, ev := range evs {
		if p.handler(types[i]) == nil {
			continue
		}
		k := h.r.partitionOf(p, events.Envelope{StreamID: streamID, Type: types[i], Metadata: ev.Metadata})
		if _, seen := at[k]; seen {
			continue
		}
		a := pos[k].Max(st.SkipTo)
		if a.Before(st.MarksUpTo) {
			return true, nil // a Reset's replay applies events up to MarksUpTo again, marked or not
		}
		if len(at) == 0 || a.Before(from) {
			from = a
		}
		at[k] = a
	}
	for range behindPages {
		envs, err := ms.Unmarked(ctx, from, p.typeList(), p.name, behindPageSize)
		if err != nil {
			return false, fmt.Errorf("projections: strong projection %q: read the events its processor has still to apply: %w", p.name, err)
		}
		for _, env := range envs {
			if a, ok := at[h.r.partitionOf(p, env)]; ok && env.Token.After(a) {
				return true, nil
			}
		}
		if len(envs) < behindPageSize {
			return false, nil
		}
		from = envs[len(envs)-1].Token
	}
	return true, nil
}

// After runs the strong handlers on the stored events, in the unit.
func (h *strongHook) After(ctx context.Context, u feed.Unit, envs []events.Envelope) error {
	var updates []Update
	for _, p := range h.projs {
		st, err := mustState(ctx, u.Rows(), p.name, feed.LockShare)
		if err != nil {
			return err
		}
		var last events.Token
		for _, env := range envs {
			hf := p.handler(env.Type)
			if hf == nil {
				continue
			}
			if !feed.Marked(env, p.name) {
				// Before left it unstamped: the processor is behind.
				return fmt.Errorf("%w (%q)", ErrStrongCatchingUp, p.name)
			}
			tx := &Tx{
				ctx: u.Context(ctx), projection: p.name, generation: st.Active, token: env.Token,
				rows: &unitRows{rows: u.Rows(), ns: rowNamespace(p.name, st.Active), tok: env.Token},
			}
			if err := callHandler(tx.ctx, hf, tx, env); err != nil {
				return handlerError(p.name, env, err)
			}
			updates = append(updates, tx.updates...)
			last = last.Max(env.Token)
		}
		if !last.IsZero() {
			b, err := json.Marshal(strongLock{Last: last})
			if err != nil {
				return err
			}
			if err := u.Rows().Put(ctx, feed.RuntimeNamespace, strongLockTable, p.name, b, last); err != nil {
				return fmt.Errorf("projections: strong projection %q: record its last append: %w", p.name, err)
			}
		}
	}
	if h.r.cfg.OnUpdate != nil && len(updates) > 0 {
		u.AfterCommit(func() {
			for _, up := range updates {
				h.r.cfg.OnUpdate(up)
			}
		})
	}
	return nil
}

// strongLock is the value of a strong projection's lock row: the token of
// the last event an append applied with it, which the next append's events
// are placed after (feed.MarkScanner.OrderAfter).
type strongLock struct {
	Last events.Token `json:"last,omitzero"`
}

// strongClaims are the strong projections whose append hook runs, by
// store: two Runners (or Clients) in one process sharing a store object
// would each install a hook, and each would apply every event, twice in
// all. Processes do not share store objects, so this is the only way in.
var strongClaims = struct {
	sync.Mutex
	by map[feed.HookedSource]map[string]bool
}{by: map[feed.HookedSource]map[string]bool{}}

// claimStrong records that projs run strongly on store in this process,
// or fails naming the first that already does. release gives them up.
func claimStrong(store feed.HookedSource, projs []*compiled) (release func(), err error) {
	strongClaims.Lock()
	defer strongClaims.Unlock()
	held := strongClaims.by[store]
	for _, p := range projs {
		if held[p.name] {
			return nil, fmt.Errorf("projections: strong projection %q already runs on this store in this process (another Runner or converge.Client): run each projection once per process, or give each its own store object", p.name)
		}
	}
	if held == nil {
		held = map[string]bool{}
		strongClaims.by[store] = held
	}
	for _, p := range projs {
		held[p.name] = true
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			strongClaims.Lock()
			defer strongClaims.Unlock()
			for _, p := range projs {
				delete(held, p.name)
			}
			if len(held) == 0 {
				delete(strongClaims.by, store)
			}
		})
	}, nil
}

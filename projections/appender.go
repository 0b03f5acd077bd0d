package projections

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/converge-es/converge/events"
)

// Appender is an events.Store whose appends also apply the runner's strong
// projections to the new events, inside the append's own transaction: a
// read right after Append sees them, with no wait. Reads are the store's.
// Pass it wherever an events.Store appends (events.Update, sagas).
//
// Strong projections still run a feed consumer: it moves their checkpoint
// (so token waits on them work like on any projection), skips events an
// Appender applied, and applies events appended some other way, which are
// therefore only eventually visible. Append every event a strong
// projection handles through an Appender.
//
// On PostgreSQL a strong handler's error fails the whole append: nothing is
// stored. In memory, where an append cannot be rolled back, the events stay
// stored and the error wraps ErrAppendedNotApplied; the projection's feed
// consumer applies them later with its usual retries.
type Appender struct {
	events.Store
	r *Runner
}

var _ events.Store = (*Appender)(nil)

// inlineResult is what an inline append applied.
type inlineResult struct {
	res     events.AppendResult
	updates []Update
	applied []string // projections that handled an event
}

// Append appends evs to streamID and applies the strong projections, then
// advances the Tracker for each projection that handled an event and
// reports the changes to OnUpdate.
func (a *Appender) Append(ctx context.Context, streamID string, expected events.ExpectedVersion, evs ...events.Event) (events.AppendResult, error) {
	relevant, err := a.relevant(evs)
	if err != nil || len(relevant) == 0 {
		return a.Store.Append(ctx, streamID, expected, evs...)
	}
	var out inlineResult
	if a.r.pg != nil {
		err = pgx.BeginFunc(ctx, a.r.pg.pool, func(tx pgx.Tx) error {
			var err error
			out, err = a.r.pg.appendInline(ctx, tx, streamID, expected, evs, relevant, a.r.cfg.Clock)
			return err
		})
		if err != nil {
			return events.AppendResult{}, err
		}
	} else {
		out, err = a.r.mem.appendInline(ctx, streamID, expected, evs, relevant)
		if out.res.StreamID == "" {
			return events.AppendResult{}, err
		}
	}
	a.announce(out)
	return out.res, err
}

// AppendTx is Append inside the caller's PostgreSQL transaction: the events
// and the strong projections' rows commit with tx, or not at all. A strong
// handler's error rolls back everything this call did (a savepoint) and
// leaves tx usable. The Tracker and OnUpdate are not told (the commit is
// yours); the projection's feed consumer moves its checkpoint past the
// events soon after the commit. In memory it fails with ErrNoTransactions.
func (a *Appender) AppendTx(ctx context.Context, tx pgx.Tx, streamID string, expected events.ExpectedVersion, evs ...events.Event) (events.AppendResult, error) {
	if a.r.pg == nil {
		return events.AppendResult{}, ErrNoTransactions
	}
	relevant, err := a.relevant(evs)
	if err != nil || len(relevant) == 0 {
		return a.r.pg.store.AppendTx(ctx, tx, streamID, expected, evs...)
	}
	out, err := a.r.pg.appendInline(ctx, tx, streamID, expected, evs, relevant, a.r.cfg.Clock)
	return out.res, err
}

// relevant returns the strong projections handling any of evs' types. An
// error (an unregistered type) is left for the store to report.
func (a *Appender) relevant(evs []events.Event) ([]*compiled, error) {
	if len(a.r.strong) == 0 {
		return nil, nil
	}
	reg := a.Registry()
	types := make(map[string]bool, len(evs))
	for _, ev := range evs {
		if raw, ok := ev.Data.(events.Raw); ok {
			types[raw.Type] = true
			continue
		}
		name, _, err := reg.NameOf(ev.Data)
		if err != nil {
			return nil, err
		}
		types[name] = true
	}
	var out []*compiled
	for _, p := range a.r.strong {
		for t := range types {
			if p.handlers[t] != nil {
				out = append(out, p)
				break
			}
		}
	}
	return out, nil
}

func (a *Appender) announce(out inlineResult) {
	if a.r.cfg.Tracker != nil {
		for _, name := range out.applied {
			a.r.cfg.Tracker.Advance(name, out.res.Token)
		}
	}
	if a.r.cfg.OnUpdate != nil {
		for _, u := range out.updates {
			a.r.cfg.OnUpdate(u)
		}
	}
}

// appendInline appends inside a savepoint of tx and applies the strong
// projections to the new events; any error rolls the savepoint back.
func (b *pgBackend) appendInline(ctx context.Context, tx pgx.Tx, streamID string, expected events.ExpectedVersion,
	evs []events.Event, projs []*compiled, clock events.Clock,
) (inlineResult, error) {
	raws := make([]events.Raw, len(evs))
	for i, ev := range evs {
		raw, err := b.store.Registry().Encode(ev.Data)
		if err != nil {
			return inlineResult{}, fmt.Errorf("event %d of %d: %w", i+1, len(evs), err)
		}
		raws[i] = raw
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return inlineResult{}, b.pgError("savepoint", err)
	}
	out, err := b.appendInlineIn(ctx, sp, streamID, expected, evs, raws, projs, clock)
	if err != nil {
		_ = sp.Rollback(context.WithoutCancel(ctx))
		return inlineResult{}, err
	}
	if err := sp.Commit(ctx); err != nil {
		return inlineResult{}, b.pgError("release savepoint", err)
	}
	return out, nil
}

func (b *pgBackend) appendInlineIn(ctx context.Context, sp pgx.Tx, streamID string, expected events.ExpectedVersion,
	evs []events.Event, raws []events.Raw, projs []*compiled, clock events.Clock,
) (inlineResult, error) {
	// Lock the projections first (FOR KEY SHARE, in name order): a
	// rebuild's switch waits for this append, and this append for a switch.
	gens := make([]int, len(projs))
	for i, p := range projs {
		gen, _, err := b.target(ctx, sp, p.name, 0)
		if err != nil {
			return inlineResult{}, err
		}
		gens[i] = gen
	}
	res, err := b.store.AppendTx(ctx, sp, streamID, expected, evs...)
	if err != nil {
		return inlineResult{}, err
	}
	if res.AlreadyStored {
		// A retry of an append that committed: its transaction applied
		// the events (or the feed consumer does), not this one.
		return inlineResult{res: res}, nil
	}
	now := clock.Now()
	envs := make([]events.Envelope, len(evs))
	for i, ev := range evs {
		envs[i] = events.Envelope{
			ID: res.EventIDs[i], StreamID: streamID, Version: res.FirstVersion + int64(i),
			Type: raws[i].Type, SchemaVersion: raws[i].SchemaVersion, Payload: raws[i].Payload,
			Metadata: ev.Metadata, RecordedAt: now, Token: res.Tokens[i],
		}
	}
	out := inlineResult{res: res}
	for i, p := range projs {
		handled := false
		for _, env := range envs {
			h := p.handlers[env.Type]
			if h == nil {
				continue
			}
			tx := &Tx{
				projection: p.name, generation: gens[i], token: env.Token, pg: sp,
				rows: &pgRows{db: sp, q: &b.q, proj: p.name, gen: gens[i], tok: env.Token},
			}
			if err := callHandler(ctx, h, tx, env); err != nil {
				return inlineResult{}, handlerError(p.name, env, err)
			}
			major, minor := tokenArgs(env.Token)
			if _, err := sp.Exec(ctx, b.q.insertMarker, p.name, gens[i], env.ID, major, minor); err != nil {
				return inlineResult{}, b.pgError("mark inline apply", err)
			}
			out.updates = append(out.updates, tx.updates...)
			handled = true
		}
		if handled {
			out.applied = append(out.applied, p.name)
		}
	}
	return out, nil
}

// appendInline appends and applies the strong projections under the state
// lock, so the projections' feed consumers (which take it too) find the
// inline markers. A handler error leaves the events stored: see Appender.
func (b *memBackend) appendInline(ctx context.Context, streamID string, expected events.ExpectedVersion,
	evs []events.Event, projs []*compiled,
) (inlineResult, error) {
	b.st.mu.Lock()
	defer b.st.mu.Unlock()
	res, err := b.store.Append(ctx, streamID, expected, evs...)
	if err != nil {
		return inlineResult{}, err
	}
	out := inlineResult{res: res}
	if res.AlreadyStored {
		return out, nil // a retry: the first append applied them
	}
	envs, err := b.store.ReadStream(context.WithoutCancel(ctx), streamID, res.FirstVersion, len(evs))
	if err != nil {
		return out, fmt.Errorf("%w: read them back: %w", ErrAppendedNotApplied, err)
	}
	var errs []error
	for _, p := range projs {
		mp, err := b.proj(p.name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		gen := mp.active
		g := mp.gens[gen]
		rows := &memTxRows{st: b.st, proj: p.name, gen: gen, locked: true}
		var updates []Update
		var marks []events.Envelope
		var failed error
		for _, env := range envs {
			h := p.handlers[env.Type]
			if h == nil {
				continue
			}
			rows.tok = env.Token
			tx := &Tx{projection: p.name, generation: gen, token: env.Token, rows: rows}
			if err := callHandler(ctx, h, tx, env); err != nil {
				failed = handlerError(p.name, env, err)
				break
			}
			updates = append(updates, tx.updates...)
			marks = append(marks, env)
		}
		if failed != nil {
			errs = append(errs, failed)
			continue
		}
		rows.commit(g)
		for _, env := range marks {
			g.markers[env.ID] = env.Token
		}
		out.updates = append(out.updates, updates...)
		out.applied = append(out.applied, p.name)
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("%w: %w", ErrAppendedNotApplied, errors.Join(errs...))
	}
	return out, nil
}

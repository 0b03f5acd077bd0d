package events

import (
	"cmp"
	"context"
	"errors"
	"fmt"
)

// DefaultUpdateMaxAttempts is how many times Update tries by default: once,
// so a conflict is returned to the caller rather than silently retried.
const DefaultUpdateMaxAttempts = 1

// loadPageSize is how many events Load reads per ReadStream call, so a long
// stream is never held in memory twice.
const loadPageSize = 500

// Aggregate describes an event-sourced entity: its state is the fold of its
// stream's events, starting from Initial and applying each event in order.
type Aggregate[S any] struct {
	// Initial returns the state of an entity with no events. It must return
	// a fresh value each call when S holds maps or slices, because Apply may
	// change it. Defaults to S's zero value.
	Initial func() S
	// Apply returns the state after event, a decoded value of a type
	// registered in the store's Registry (not a pointer). Return an error
	// for an event the aggregate cannot accept: loading stops with it.
	// Required.
	Apply func(state S, event any) (S, error)
}

func (a Aggregate[S]) validate() error {
	if a.Apply == nil {
		return errors.New("events: Aggregate.Apply is nil (set it to fold events into the state)")
	}
	return nil
}

func (a Aggregate[S]) initial() S {
	if a.Initial == nil {
		var zero S
		return zero
	}
	return a.Initial()
}

// Load replays streamID through agg and returns the state and the version
// it reflects (0 for a stream with no events). Append with
// Exactly(version) to write based on that state. Inside a unit of work
// (UnitFromContext) that shares store's Registry it reads through the
// unit, so it sees the unit's own appends.
//
// On error the state is S's zero value: a partly replayed state is never
// returned, so it cannot be mistaken for the real one.
func Load[S any](ctx context.Context, store Store, agg Aggregate[S], streamID string) (S, int64, error) {
	var zero S
	if err := agg.validate(); err != nil {
		return zero, 0, err
	}
	store = storeFor(ctx, store)
	if store == nil {
		return zero, 0, errors.New("events: Load: the store is nil and ctx carries no unit of work: pass the store to read from")
	}
	reg := store.Registry()
	state := agg.initial()
	var version int64
	for {
		page, err := store.ReadStream(ctx, streamID, version+1, loadPageSize)
		if err != nil {
			return zero, 0, fmt.Errorf("events: load %s: %w", quoteStreamID(streamID), err)
		}
		for _, env := range page {
			ev, err := reg.Decode(env)
			if err != nil {
				return zero, 0, fmt.Errorf("events: load %s: event %d: %w", quoteStreamID(streamID), env.Version, err)
			}
			if state, err = agg.Apply(state, ev); err != nil {
				return zero, 0, fmt.Errorf("events: load %s: apply event %d (%s): %w", quoteStreamID(streamID), env.Version, env.Type, err)
			}
			version = env.Version
		}
		if len(page) < loadPageSize {
			return state, version, nil
		}
	}
}

// UpdateConfig tunes Update.
type UpdateConfig struct {
	// MaxAttempts is how many times Update loads, decides and appends
	// before it gives up on conflicts with other writers and returns the
	// *WrongExpectedVersionError. Raise it for streams with concurrent
	// writers; decide must then be safe to call more than once. Defaults
	// to DefaultUpdateMaxAttempts (1: no retry).
	MaxAttempts int
}

func (c *UpdateConfig) withDefaults() UpdateConfig {
	out := UpdateConfig{}
	if c != nil {
		out = *c
	}
	out.MaxAttempts = cmp.Or(out.MaxAttempts, DefaultUpdateMaxAttempts)
	return out
}

func (c *UpdateConfig) validate() error {
	if c.MaxAttempts < 1 {
		return fmt.Errorf("events: UpdateConfig.MaxAttempts is %d: use 0 for the default or a positive count", c.MaxAttempts)
	}
	return nil
}

// Update is the command side of an event-sourced aggregate: it loads
// streamID's state, asks decide which events the command produces, and
// appends them with Exactly(the loaded version), so a write that raced
// with another fails instead of being based on stale state. On such a
// conflict it starts again from the load, up to cfg.MaxAttempts times in
// all; a nil cfg means defaults (no retry).
//
// Inside a unit of work (a handler run by converge's runtime carries one in
// its context), Update loads and appends through the unit: the events commit
// with the handler's other writes, or not at all. The unit is taken to be
// store's when it shares store's Registry: give two stores used in one
// process registries of their own, or Update inside one's unit would write
// through it to the other.
//
// decide may run several times and must have no side effects besides its
// result. An error from it is returned unchanged. When it returns no events
// there is nothing to do, and Update returns a zero AppendResult and nil.
//
// An *OutcomeUnknownError (the append may or may not have committed) is
// returned as it is. Calling Update again decides again on what it loads:
// if the first append committed, a decision that is not idempotent would be
// made twice. Give decide's events ids derived from the command (a command
// handler's do: command.Handle dedupes by command id) so that a second
// decision on the moved stream can be recognised, or read the stream to
// learn what was stored.
func Update[S any](ctx context.Context, store Store, agg Aggregate[S], streamID string, cfg *UpdateConfig,
	decide func(state S) ([]Event, error),
) (AppendResult, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return AppendResult{}, err
	}
	if decide == nil {
		return AppendResult{}, errors.New("events: Update: decide is nil")
	}
	// A nil store with no unit in ctx: Load says so.
	store = storeFor(ctx, store)
	for attempt := 1; ; attempt++ {
		state, version, err := Load(ctx, store, agg, streamID)
		if err != nil {
			return AppendResult{}, err
		}
		evs, err := decide(state)
		if err != nil {
			return AppendResult{}, err
		}
		if len(evs) == 0 {
			return AppendResult{}, nil
		}
		// Exactly(0) is NoStream: a new entity must not exist yet.
		res, err := store.Append(ctx, streamID, Exactly(version), evs...)
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, ErrWrongExpectedVersion) || attempt >= c.MaxAttempts {
			if errors.Is(err, ErrWrongExpectedVersion) && c.MaxAttempts > 1 {
				return AppendResult{}, fmt.Errorf("events: update %q: still conflicting after %d attempts (raise UpdateConfig.MaxAttempts, or split the stream): %w",
					streamID, attempt, err)
			}
			return AppendResult{}, err
		}
		// Reload right away: the conflict means the stream has moved on.
		if err := ctx.Err(); err != nil {
			return AppendResult{}, err
		}
	}
}

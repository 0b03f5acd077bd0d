package feed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/converge-es/converge/events"
)

// ProcessorsTable holds, per processor name, the partition count it last
// ran with, so a change of count can carry its position over.
const ProcessorsTable = "processors"

type processorRecord struct {
	Partitions int `json:"partitions"`
	// Key is the partition key the count was used with (older records
	// have none: the processor's own then).
	Key PartitionKey `json:"key,omitempty"`
	// Carried is what the partitions of the count before had handled
	// when the count last changed; nil before the first change.
	Carried *carriedPositions `json:"carried,omitempty"`
}

// carriedPositions are the checkpoints of a processor's previous
// partitions when their count changed. The new partitions start at the
// lowest of them, so they read again events that a faster old partition
// had handled already: an event at or before the position of the old
// partition it belonged to is skipped, which keeps every event handled
// once across the change.
//
// A count changed again before the partitions of the last change passed
// everything their predecessors had handled needs the earlier change too:
// the latest positions say what the partitions that just stopped covered,
// handled or skipped, but not what those skipped past their own
// checkpoints (a lagging partition of count 3 sits below events a count-2
// partition had handled, and a count of 1 started from it would handle
// them again). So each change keeps the one before it (Earlier), and an
// event is skipped when any kept change says it was handled. A change is
// dropped once every partition of the new count starts past its highest
// position: no event it could skip is read again. A count changed back to
// an earlier one resumes its partitions at their own old checkpoints,
// behind the latest positions, and the latest change skips what the
// partitions in between handled.
type carriedPositions struct {
	Partitions int            `json:"partitions"`
	Key        PartitionKey   `json:"key,omitempty"`
	Positions  []events.Token `json:"positions"`
	// Earlier is the change before this one, while it still matters.
	Earlier *carriedPositions `json:"earlier,omitempty"`
}

// skip returns what reports whether a partition of an earlier count had
// handled an event, or nil when nothing is to be skipped.
func (c *carriedPositions) skip() func(events.Envelope) bool {
	var kept []func(events.Envelope) bool
	for g := c; g != nil; g = g.Earlier {
		if f := g.skipOne(); f != nil {
			kept = append(kept, f)
		}
	}
	switch len(kept) {
	case 0:
		return nil
	case 1:
		return kept[0]
	}
	return func(env events.Envelope) bool {
		for _, f := range kept {
			if f(env) {
				return true
			}
		}
		return false
	}
}

// skipOne is skip for this change alone. Past the highest old position it
// answers without hashing the event's key, so a processor long past its
// change of count pays one comparison per event.
func (c *carriedPositions) skipOne() func(events.Envelope) bool {
	if c.Partitions < 1 || len(c.Positions) != c.Partitions {
		return nil
	}
	highest := c.highest()
	return func(env events.Envelope) bool {
		return !env.Token.After(highest) &&
			!env.Token.After(c.Positions[PartitionOf(KeyOf(c.Key, env), c.Partitions)])
	}
}

// highest is the highest of the change's positions.
func (c *carriedPositions) highest() events.Token {
	if len(c.Positions) == 0 {
		return events.Token{}
	}
	return slices.MaxFunc(c.Positions, func(a, b events.Token) int { return a.Compare(b) })
}

// without returns the chain of changes from c without those whose highest
// position is at or before start: no event they could skip is read again
// by partitions that all start at or past it.
func (c *carriedPositions) without(start events.Token) *carriedPositions {
	if c == nil {
		return nil
	}
	rest := c.Earlier.without(start)
	if !c.highest().After(start) {
		return rest
	}
	kept := *c
	kept.Earlier = rest
	return &kept
}

// seed carries the processor's position over a change of its partition
// count: partitions that have never run start at the lowest position of
// the old partitions, not at the beginning of the feed, and skip what an
// old partition had handled past that low mark (carriedPositions).
//
// It refuses (ErrPartitionKeyChanged) a PartitionKey changed at the same
// count above 1: the partitions keep their names and checkpoints, but each
// would now get events that others had, behind and ahead of its position.
// (One partition gets every event whatever the key.)
//
// The start tries it once, to refuse there when it can. Any other failure
// (the database did not answer) is not the start's to report: the
// processor starts, and each partition's consumer waits for a seed that
// succeeds before it takes its lease (awaitSeed). Starting without it
// would be wrong twice over: new partitions would begin at the start of
// the feed and apply again what the old ones had applied, and a changed
// key would go unnoticed.
func (p *Processor) seed(ctx context.Context) error {
	p.seedMu.Lock()
	defer p.seedMu.Unlock()
	err := p.trySeedLocked(ctx)
	switch {
	case err == nil:
	case errors.Is(err, ErrPartitionKeyChanged):
		return err
	case !errors.Is(err, context.Canceled):
		p.cfg.Logger.Warn("feed: could not read the processor's partition record; its partitions wait for it before delivering",
			"processor", p.cfg.Name, "error", err)
	}
	return nil
}

// awaitSeed returns once the seed has succeeded, trying it again with
// backoff until it does, and what the consumer is to skip
// (carriedPositions). It fails when ctx ends, or with
// ErrPartitionKeyChanged (kept in refused for Run to return).
func (p *Processor) awaitSeed(ctx context.Context) (func(events.Envelope) bool, error) {
	p.seedMu.Lock()
	defer p.seedMu.Unlock()
	retry := backoff{min: p.subCfg.PendingBackoffMin, max: p.subCfg.FallbackPollInterval}
	for !p.seeded {
		if !sleep(ctx, retry.next()) {
			return nil, context.Cause(ctx)
		}
		err := p.trySeedLocked(ctx)
		switch {
		case err == nil:
			p.cfg.Logger.Info("feed: the processor's partition record is read; delivering", "processor", p.cfg.Name)
		case errors.Is(err, ErrPartitionKeyChanged):
			p.cfg.Logger.Error("feed: refusing to deliver", "processor", p.cfg.Name, "error", err)
			return nil, err
		case ctx.Err() != nil:
			return nil, context.Cause(ctx)
		default:
			p.cfg.Logger.Warn("feed: could not read the processor's partition record, retrying; its partitions wait for it",
				"processor", p.cfg.Name, "error", err)
		}
	}
	return p.carried.skip(), nil
}

// trySeedLocked runs the seed once and records its outcome: seeded, or
// refused. The caller holds seedMu.
func (p *Processor) trySeedLocked(ctx context.Context) error {
	err := p.seedPartitions(ctx)
	switch {
	case err == nil:
		p.seeded = true
	case errors.Is(err, ErrPartitionKeyChanged):
		p.refused = err
	}
	return err
}

// keyChange refuses a PartitionKey that differs from oldKey, the one the
// processor last ran with at old partitions, when the count is the same.
func (p *Processor) keyChange(old int, oldKey PartitionKey) error {
	now, key := p.cfg.Partitions, p.cfg.PartitionKey
	if old != now || now < 2 || oldKey == key {
		return nil
	}
	return fmt.Errorf("%w: processor %q last ran with %q and now has %q, both at %d partitions; "+
		"its partitions would skip some events and handle others twice. Give it a new Name (it starts "+
		"over from the beginning of the feed), or change Partitions as well (the new partitions then "+
		"carry the old ones' positions over), or go back to %q",
		ErrPartitionKeyChanged, p.cfg.Name, oldKey, key, now, oldKey)
}

// checkKey is keyChange against the stored record, for AddHandlers to
// refuse before the router runs. A record it cannot read is left to the
// start's seed, which checks again.
func (p *Processor) checkKey(ctx context.Context) error {
	var rec processorRecord
	if row, ok, err := p.src.Rows().Get(ctx, RuntimeNamespace, ProcessorsTable, p.cfg.Name, LockNone); err == nil && ok &&
		json.Unmarshal(row.Value, &rec) == nil && rec.Key != "" {
		return p.keyChange(rec.Partitions, rec.Key)
	}
	return nil
}

// ErrPartitionKeyChanged refuses to start a processor whose PartitionKey
// differs from the one it last ran with at the same partition count.
var ErrPartitionKeyChanged = errors.New("feed: the processor's PartitionKey changed")

func (p *Processor) seedPartitions(ctx context.Context) error {
	rows, cps := p.src.Rows(), p.src.Checkpoints()
	now, key := p.cfg.Partitions, p.cfg.PartitionKey
	old, oldKey := 0, key
	var rec processorRecord
	row, ok, err := rows.Get(ctx, RuntimeNamespace, ProcessorsTable, p.cfg.Name, LockNone)
	switch {
	case err != nil:
		return err
	case ok:
		if err := json.Unmarshal(row.Value, &rec); err != nil {
			return fmt.Errorf("processor record %s: %w", p.cfg.Name, err)
		}
		old = rec.Partitions
		if rec.Key != "" {
			oldKey = rec.Key
		}
	case now > 1:
		// No record: the processor may have run unsplit before records
		// existed; its checkpoint is the plain name. A failed read says
		// nothing: taken as "never ran", the record written below would
		// start the partitions at the beginning of the feed for good.
		pos, err := cps.Position(ctx, p.cfg.Name)
		if err != nil {
			return fmt.Errorf("position of %s: %w", p.cfg.Name, err)
		}
		if !pos.IsZero() {
			old = 1
		}
	}
	if err := p.keyChange(old, oldKey); err != nil {
		return err
	}
	if old == now {
		p.carried = rec.Carried
		if ok && rec.Key == "" {
			// A record from before keys were kept: keep this one, so a
			// later change of key is caught.
			rec.Key = key
			b, _ := json.Marshal(rec)
			return rows.Put(ctx, RuntimeNamespace, ProcessorsTable, p.cfg.Name, b, events.Token{})
		}
		return nil
	}
	carried := rec.Carried
	if old > 0 {
		var low events.Token
		positions := make([]events.Token, old)
		for i := range old {
			pos, err := cps.Position(ctx, PartitionName(p.cfg.Name, i, old))
			if err != nil {
				return err
			}
			positions[i] = pos
			if i == 0 || pos.Before(low) {
				low = pos
			}
		}
		if !low.IsZero() {
			for _, ps := range p.parts {
				if err := p.seedOne(ctx, ps.name, low); err != nil {
					return err
				}
			}
		}
		// Where the new partitions start: at low when seeded, or at their
		// own checkpoints from an earlier run at this count, which may be
		// behind it.
		start := low
		for _, ps := range p.parts {
			pos, err := cps.Position(ctx, ps.name)
			if err != nil {
				return err
			}
			if pos.Before(start) {
				start = pos
			}
		}
		carried = &carriedPositions{Partitions: old, Key: oldKey, Positions: positions, Earlier: rec.Carried.without(start)}
	}
	b, _ := json.Marshal(processorRecord{Partitions: now, Key: key, Carried: carried})
	if err := rows.Put(ctx, RuntimeNamespace, ProcessorsTable, p.cfg.Name, b, events.Token{}); err != nil {
		return err
	}
	p.carried = carried
	return nil
}

// seedOne moves a never-used partition checkpoint to pos, under its lease
// so it cannot race a consumer already delivering it.
func (p *Processor) seedOne(ctx context.Context, name string, pos events.Token) error {
	cps := p.src.Checkpoints()
	// Not cancelled with ctx, as a consumer's acquire: an abandoned one
	// could still take the lease, and nobody would release it.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.subCfg.LeaseTTL)
	l, err := cps.Acquire(actx, name, p.member+"/seed", p.subCfg.LeaseTTL)
	cancel()
	if errors.Is(err, ErrLeaseHeld) {
		return nil // someone runs it already: it has a position of its own
	}
	if err != nil {
		return err
	}
	defer func() { _ = cps.Release(context.WithoutCancel(ctx), l) }()
	if err := ctx.Err(); err != nil {
		return err
	}
	if !l.Position.IsZero() {
		return nil
	}
	return cps.Advance(ctx, l, pos)
}

package feed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/converge-es/converge/events"
)

// ProcessorsTable holds, per processor name, the partition count it last
// ran with, so a change of count can carry its position over.
const ProcessorsTable = "processors"

type processorRecord struct {
	Partitions int `json:"partitions"`
}

// seed carries the processor's position over a change of its partition
// count: partitions that have never run start at the lowest position of
// the old partitions, not at the beginning of the feed. Events between an
// old partition's position and that low mark are handled again, which
// handlers must tolerate (the runtime's consumers dedupe them). It runs
// once, before any partition subscribes; failures are logged and the new
// partitions then start from their own (possibly zero) positions.
func (p *Processor) seed(ctx context.Context) {
	if err := p.seedPartitions(ctx); err != nil && !errors.Is(err, context.Canceled) {
		p.cfg.Logger.Warn("feed: could not carry the position over a change of partition count; new partitions start from their own checkpoints",
			"processor", p.cfg.Name, "error", err)
	}
}

func (p *Processor) seedPartitions(ctx context.Context) error {
	rows, cps := p.src.Rows(), p.src.Checkpoints()
	now := p.cfg.Partitions
	old := 0
	row, ok, err := rows.Get(ctx, RuntimeNamespace, ProcessorsTable, p.cfg.Name, LockNone)
	switch {
	case err != nil:
		return err
	case ok:
		var rec processorRecord
		if err := json.Unmarshal(row.Value, &rec); err != nil {
			return fmt.Errorf("processor record %s: %w", p.cfg.Name, err)
		}
		old = rec.Partitions
	case now > 1:
		// No record: the processor may have run unsplit before records
		// existed; its checkpoint is the plain name.
		if pos, err := cps.Position(ctx, p.cfg.Name); err == nil && !pos.IsZero() {
			old = 1
		}
	}
	if old > 0 && old != now {
		var low events.Token
		for i := range old {
			pos, err := cps.Position(ctx, PartitionName(p.cfg.Name, i, old))
			if err != nil {
				return err
			}
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
	}
	if old != now {
		b, _ := json.Marshal(processorRecord{Partitions: now})
		return rows.Put(ctx, RuntimeNamespace, ProcessorsTable, p.cfg.Name, b, events.Token{})
	}
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

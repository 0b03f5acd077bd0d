package feed

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// AwaitTakeover waits, while processes of another build run the processor
// beside this one (they handle otherwise: see ProcessorConfig.Handles),
// until this process delivers every partition assigned to it: from then
// on no process that handles less delivers them, so an event only this
// build handles, appended after AwaitTakeover returns, is delivered, not
// filtered out by an older process. Where the source lists its consumers'
// leases (feed.Inspector: both stores do) it also waits until no process
// outside those assigned holds a partition, so a partition assigned to
// another process of this build, not taken yet, is not left with an older
// one. It returns at once when every live
// process handles the same, or when this one stands by (another handles
// more). ctx bounds the wait: a partition whose old holder died is taken
// over only when its lease expires.
func (p *Processor) AwaitTakeover(ctx context.Context) error {
	for {
		ch := p.mship.changed.C()
		if p.takenOver(ctx) {
			return nil
		}
		t := time.NewTimer(takeoverPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("feed: processor %s: waiting to take the partitions over from another build's processes: %w", p.cfg.Name, ctx.Err())
		case <-ch:
			t.Stop()
		case <-t.C:
		}
	}
}

// takeoverPoll is how often AwaitTakeover looks at the partitions' states
// and leases, which change without a signal of their own.
const takeoverPoll = 10 * time.Millisecond

// takenOver reports whether AwaitTakeover is done: the members are known
// and either all handle the same, or this one stands by, or it holds every
// partition assigned to it (delivering or halted: a halted partition stays
// with its holder) and, where the source lists its consumers' leases
// (Inspector), no process outside the assigned ones holds any partition:
// a process of another build that has not stood by yet may still hold one
// assigned to a third process of this build, which has not taken it yet.
func (p *Processor) takenOver(ctx context.Context) bool {
	m := p.mship
	m.mu.Lock()
	known, mixed, assign, split := m.known, m.mixed, slices.Clone(m.assign), m.split || m.rows == nil
	m.mu.Unlock()
	switch {
	case !known, !split:
		return false
	case !mixed || !slices.Contains(assign, p.member):
		return true
	}
	for _, ps := range p.parts {
		if assign[ps.index%len(assign)] != p.member {
			continue
		}
		ps.mu.Lock()
		active, cst := ps.state == PartitionActive, ps.consumer
		ps.mu.Unlock()
		if !active && (cst == nil || cst.get().Lease != LeaseHolding) {
			return false
		}
	}
	insp, ok := p.src.(Inspector)
	if !ok {
		return true
	}
	infos, err := insp.Consumers(ctx)
	if err != nil {
		return false // looked at again at the next poll
	}
	names := p.CheckpointNames()
	for _, ci := range infos {
		if ci.Owner == "" || !slices.Contains(names, ci.Name) {
			continue
		}
		// A partition's lease owner is its process's member id, "/" and
		// the partition's index.
		i := strings.LastIndexByte(ci.Owner, '/')
		if i < 0 || !slices.Contains(assign, ci.Owner[:i]) {
			return false
		}
	}
	return true
}

package feed

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/converge-es/converge/events"
)

// ProcessorStatus is what a processor is doing in this process.
type ProcessorStatus struct {
	Name string
	// Member is this process's id in the membership group; Members are
	// the live members it last saw, sorted.
	Member  string
	Members []string
	// Assigned are the members the partitions are split among, sorted:
	// those that handle everything any live member handles (see
	// ProcessorConfig.Handles). A live member missing here stands by.
	Assigned []string
	// Partitions, in partition order.
	Partitions []PartitionStatus
}

// PartitionStatus is one partition's state in this process.
type PartitionStatus struct {
	Index      int
	Checkpoint string
	State      PartitionState
	Since      time.Time
	// Position is the last position this process committed (zero when it
	// never held the partition; read Processor.Position for the stored
	// one).
	Position events.Token
	// LastError is the last handler or store error, and when.
	LastError   string
	LastErrorAt time.Time
	// Halt is set while the partition is halted.
	Halt *HaltRecord
	// Consumer is the partition's latest subscription as it reports
	// itself (lease, degraded since, counts of lease events), without
	// asking the Source. Its Lease is LeaseStopped before the first one.
	Consumer ConsumerStatus
}

// Status reports the processor's partitions as this process sees them.
func (p *Processor) Status() ProcessorStatus {
	members, assigned := p.mship.snapshot()
	st := ProcessorStatus{Name: p.cfg.Name, Member: p.member, Members: members, Assigned: assigned}
	for _, ps := range p.parts {
		ps.mu.Lock()
		s := PartitionStatus{
			Index: ps.index, Checkpoint: ps.name, State: ps.state, Since: ps.since, Position: ps.pos,
			LastError: ps.lastErr, LastErrorAt: ps.lastErrAt,
		}
		if s.State == "" {
			s.State = PartitionIdle
		}
		if ps.halt != nil {
			h := *ps.halt
			s.Halt = &h
		}
		cst := ps.consumer
		ps.mu.Unlock()
		if cst != nil {
			s.Consumer = cst.get()
		} else {
			s.Consumer = ConsumerStatus{Consumer: ps.name, Lease: LeaseStopped}
		}
		st.Partitions = append(st.Partitions, s)
	}
	return st
}

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
		if p.takenOver() && p.noneHeldByOthers(ctx) {
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

// takeoverPoll is how often AwaitTakeover looks at the partitions' states,
// which change without a signal of their own.
const takeoverPoll = 10 * time.Millisecond

// noneHeldByOthers reports, where the source lists its consumers
// (Inspector), that no partition of the processor is held by a process
// the partitions are not assigned to: one of another build that has not
// stood by yet may still hold a partition assigned to a third process of
// this build, which has not taken it yet. Without an Inspector it
// reports true.
func (p *Processor) noneHeldByOthers(ctx context.Context) bool {
	insp, ok := p.src.(Inspector)
	if !ok {
		return true
	}
	p.mship.mu.Lock()
	mixed, assign := p.mship.mixed, slices.Clone(p.mship.assign)
	p.mship.mu.Unlock()
	if !mixed || !slices.Contains(assign, p.member) {
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

// takenOver reports whether AwaitTakeover is done.
func (p *Processor) takenOver() bool {
	m := p.mship
	m.mu.Lock()
	known, mixed, assign := m.known, m.mixed, slices.Clone(m.assign)
	m.mu.Unlock()
	switch {
	case !known:
		return false
	case !mixed || !slices.Contains(assign, p.member):
		return true
	}
	for _, ps := range p.parts {
		if assign[ps.index%len(assign)] != p.member {
			continue
		}
		// Held under this process's lease, delivering or halted (a halted
		// partition stays with its holder): no other process delivers it.
		ps.mu.Lock()
		active, cst := ps.state == PartitionActive, ps.consumer
		ps.mu.Unlock()
		if !active && (cst == nil || cst.get().Lease != LeaseHolding) {
			return false
		}
	}
	return true
}

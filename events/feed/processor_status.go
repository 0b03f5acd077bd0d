package feed

import (
	"slices"
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
	// Heartbeating is set once the processor runs (a router runs its
	// handlers, or Run): its membership has started, though its first
	// heartbeat may not have answered yet. Before that IsAssigned is
	// false because nothing is known, not because another build runs.
	Heartbeating bool
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

// IsAssigned reports whether the processor's partitions are split among
// this process and others (see ProcessorStatus.Assigned), and returns a
// channel closed at the next change of the members or of the split. It is
// false before the first heartbeat has answered, after Close, and while
// live processes of another build handle what this one does not (it then
// stands by). Work a process does beside its deliveries, on the same
// events, should follow it: a saga engine's parked-step driver does
// (saga.EngineConfig.Assigned), so an older build's process does not run
// a step, a timer's firing or an operator's cancel only the newer build
// has a handler for.
func (p *Processor) IsAssigned() (bool, <-chan struct{}) {
	m := p.mship
	ch := m.changed.C()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.known && slices.Contains(m.assign, p.member), ch
}

// Status reports the processor's partitions as this process sees them.
func (p *Processor) Status() ProcessorStatus {
	members, assigned := p.mship.snapshot()
	st := ProcessorStatus{Name: p.cfg.Name, Member: p.member, Members: members, Assigned: assigned, Heartbeating: p.heartbeating.Load()}
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

package feed

import (
	"fmt"
	"sync"
	"time"

	"github.com/converge-es/converge/events"
)

// LeaseState is where a consumer stands with its lease.
type LeaseState string

const (
	// LeaseAcquiring: the consumer has not learned yet whether it can take
	// the lease (it just started, or the Source failed to answer).
	LeaseAcquiring LeaseState = "acquiring"
	// LeaseStandingBy: another consumer holds the lease; this one tries to
	// take it every RenewInterval.
	LeaseStandingBy LeaseState = "standing by"
	// LeaseHolding: this consumer holds the lease and delivers.
	LeaseHolding LeaseState = "holding lease"
	// LeaseStopped: the subscription ended.
	LeaseStopped LeaseState = "stopped"
)

// LeaseEventKind says what happened to a consumer's lease.
type LeaseEventKind string

const (
	// LeaseAcquired: the consumer took the lease and starts delivering.
	LeaseAcquired LeaseEventKind = "acquired"
	// LeaseLost: the lease was taken over, or renewals failed for a whole
	// LeaseTTL; the consumer stops delivering and stands by.
	LeaseLost LeaseEventKind = "lost"
	// LeaseReleased: the consumer gave the lease up (Close, or its context
	// ended), so a standby can take over at once.
	LeaseReleased LeaseEventKind = "released"
)

// LeaseEvent is a change of a consumer's lease, reported to
// SubscriberConfig.OnLeaseChange.
type LeaseEvent struct {
	// Consumer is the checkpoint name (see CheckpointName).
	Consumer string
	// Owner is the subscription's owner string in the lease.
	Owner string
	Kind  LeaseEventKind
	// Generation and Position are the lease's, as acquired.
	Generation int64
	Position   events.Token
	// Err is why the lease was lost (nil for the other kinds).
	Err error
	// At is when it happened, by SubscriberConfig.Clock.
	At time.Time
}

// ConsumerStatus is what one consumer (one Subscribe call) reports about
// itself, without asking the Source: it stays accurate while the database
// is unreachable.
type ConsumerStatus struct {
	// Consumer is the checkpoint name; Owner the subscription's owner.
	Consumer string
	Owner    string
	Lease    LeaseState
	// DegradedSince is when calls to the Source started failing (the
	// database is unreachable, say); zero while they succeed. The first
	// call that succeeds clears it.
	DegradedSince time.Time
	// LastError is the latest failure of the current degraded spell.
	LastError error
	// Acquired, Lost and Released count lease events since the
	// subscription started; Failures counts failed calls to the Source.
	// They only grow, so callers can export them as counters.
	Acquired, Lost, Released, Failures uint64
}

// Degraded reports whether calls to the Source are failing.
func (s ConsumerStatus) Degraded() bool { return !s.DegradedSince.IsZero() }

// String is a one-line summary: "holding lease", "standing by", or e.g.
// "degraded since 2026-11-30T08:00:00Z: <error> (holding lease)".
func (s ConsumerStatus) String() string {
	if !s.Degraded() {
		return string(s.Lease)
	}
	return fmt.Sprintf("degraded since %s: %v (%s)", s.DegradedSince.UTC().Format(time.RFC3339), s.LastError, s.Lease)
}

// consumerState is a consumer's ConsumerStatus, updated by its goroutines
// and read by Subscriber.Status.
type consumerState struct {
	clock    events.Clock
	onChange func(LeaseEvent)

	mu sync.Mutex
	s  ConsumerStatus
	// spell counts the failures of the current degraded spell.
	spell int
}

func newConsumerState(cfg *SubscriberConfig, name, owner string) *consumerState {
	return &consumerState{
		clock:    cfg.Clock,
		onChange: cfg.OnLeaseChange,
		s:        ConsumerStatus{Consumer: name, Owner: owner, Lease: LeaseAcquiring},
	}
}

func (st *consumerState) get() ConsumerStatus {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.s
}

// ok records a successful call to the Source. When it ends a degraded
// spell it returns when the spell began and how many calls failed in it.
func (st *consumerState) ok() (since time.Time, failures int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	since, failures = st.s.DegradedSince, st.spell
	st.s.DegradedSince, st.s.LastError, st.spell = time.Time{}, nil, 0
	return since, failures
}

// failed records a failed call to the Source and reports whether it is the
// first of a degraded spell.
func (st *consumerState) failed(err error) (first bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	first = st.s.DegradedSince.IsZero()
	if first {
		st.s.DegradedSince = st.clock.Now()
	}
	st.s.LastError = err
	st.s.Failures++
	st.spell++
	return first
}

func (st *consumerState) setLease(l LeaseState) {
	st.mu.Lock()
	st.s.Lease = l
	st.mu.Unlock()
}

// leaseChanged records a lease event and reports it to the hook.
func (st *consumerState) leaseChanged(kind LeaseEventKind, lease Lease, err error) {
	at := st.clock.Now()
	st.mu.Lock()
	ev := LeaseEvent{Consumer: st.s.Consumer, Owner: st.s.Owner, Kind: kind, Generation: lease.Generation, Position: lease.Position, Err: err, At: at}
	switch kind {
	case LeaseAcquired:
		st.s.Acquired++
		st.s.Lease = LeaseHolding
	case LeaseLost:
		st.s.Lost++
		st.s.Lease = LeaseStandingBy
	case LeaseReleased:
		st.s.Released++
		st.s.Lease = LeaseStopped
	}
	st.mu.Unlock()
	if st.onChange != nil {
		st.onChange(ev)
	}
}

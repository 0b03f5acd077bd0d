package consistency

import (
	"time"

	"github.com/converge-es/converge/events"
)

// Reason says why a Status is stale.
type Reason string

const (
	// ReasonDeadline: the wait's deadline passed before every checkpoint
	// reached the target. The projection is lagging or stuck, or, without
	// a Counter to tell, the token is from the future (ReasonAhead).
	ReasonDeadline Reason = "deadline"
	// ReasonAhead: the wait's deadline passed and the target lies past
	// every stored event (the Counter found none between the checkpoint
	// and it, so Behind is 0): no write of this store returned the token.
	// It comes from another database, was forged, or the store lost events
	// (restored from an older backup). Waiting longer would not help.
	ReasonAhead Reason = "ahead"
	// ReasonRejected: TrackerConfig.MaxWaiters waits were already blocked,
	// so this one did not wait at all, nor counted how far behind it is
	// (Behind is -1). Raise MaxWaiters or find out why so
	// many reads wait (a stuck projection makes every wait last its full
	// deadline).
	ReasonRejected Reason = "rejected"
	// ReasonStopped: the Tracker was stopped, which releases every waiter.
	ReasonStopped Reason = "stopped"
)

// Status is what a wait found: whether the named read models have reached
// the target, and if not, by how much they trail it.
type Status struct {
	// Stale is true when at least one named checkpoint is still before
	// Target. A stale read is still answered; Stale tells the caller to say
	// so (a "pending" badge, X-Consistency-Stale: true).
	Stale bool
	// Reason says why the status is stale; empty when fresh.
	Reason Reason
	// Target is the token that was waited for.
	Target events.Token
	// Checkpoint is the lowest checkpoint over the named read models: every
	// one of them reflects at least the events up to it. A name the tracker
	// has never learned a position for counts as zero, so Checkpoint is
	// always a safe lower bound.
	Checkpoint events.Token
	// Behind is how many events lie after Checkpoint up to Target: 0 when
	// fresh (or stale with ReasonAhead), -1 when stale and unknown (no
	// Counter configured, the count failed, a position was never learned,
	// or the wait was rejected: a rejected wait asks the database nothing,
	// since rejections come when reads flood in).
	Behind int64
	// Lagging lists the names still before Target, in the order given;
	// nil when fresh.
	Lagging []string
	// Waited is how long the wait took.
	Waited time.Duration
}

package feed

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/converge-es/converge/events"
)

// Defaults of SubscriberConfig.
const (
	// DefaultLeaseTTL is how long a consumer's lease lasts without renewal
	// (see SubscriberConfig.LeaseTTL for why 5s).
	DefaultLeaseTTL = 5 * time.Second
	// MinLeaseTTL is the shortest LeaseTTL accepted: below it a lease
	// would expire between the renewals a store can answer.
	MinLeaseTTL = 10 * time.Millisecond
	// DefaultBatchSize is how many events one read of the feed returns.
	DefaultBatchSize = 100
	// DefaultCommitBatch is how many already-read events may share one unit
	// of work (one transaction and one checkpoint write): by default each
	// Ack commits. Projection runners raise it.
	DefaultCommitBatch = 1
	// DefaultFallbackPollInterval is how often the feed is polled while
	// push wake-ups are unhealthy.
	DefaultFallbackPollInterval = time.Second
	// DefaultSafetyPollInterval is how often the feed is re-read while push
	// is healthy but nothing woke the consumer.
	DefaultSafetyPollInterval = 30 * time.Second
	// DefaultPendingBackoffMin and DefaultPendingBackoffMax bound the
	// retries while committed events are not readable yet.
	DefaultPendingBackoffMin = 2 * time.Millisecond
	DefaultPendingBackoffMax = 100 * time.Millisecond
	// DefaultNackBackoffMin and DefaultNackBackoffMax bound the delay before
	// a Nacked event is delivered again.
	DefaultNackBackoffMin = 100 * time.Millisecond
	DefaultNackBackoffMax = 5 * time.Second
)

// SubscriberConfig configures a Subscriber. Only ConsumerName is required.
type SubscriberConfig struct {
	// ConsumerName is the durable name of the consumer: its checkpoint and
	// its lease are stored under it (see CheckpointName for category
	// topics). Every process running the same consumer uses the same name;
	// one of them delivers, the others stand by. Renaming a consumer starts
	// it again from the beginning of the feed. It holds neither '/' nor
	// '#': in checkpoint names '/' precedes a topic (CheckpointName) and
	// '#' a partition (PartitionName), so "reports" of topic "eu/orders"
	// and "reports/eu" of topic "orders" would share one checkpoint. The
	// one exception is a partition's own name, PartitionName(base,
	// Partition.Index, Partition.Count). Required.
	ConsumerName string
	// Owner names this process in leases and membership groups, for
	// operators. It need not be unique: each Subscriber (and each
	// Processor) appends a random instance id of its own, and each
	// Subscribe call its number, so a lease's owner reads
	// "<Owner>/<instance>/<n>" (a processor's partition:
	// "<Owner>/<instance>/<partition>"). Two live subscriptions therefore
	// never share a lease, even under one Owner: a stable pod name, or a
	// process restarted while the old one is frozen, cannot deliver or
	// commit an event twice. Defaults to "<hostname>-<pid>".
	Owner string
	// LeaseTTL is how long the lease lasts without renewal. Every call to
	// the Source also times out after it.
	//
	// It bounds failover only when the holder died (crashed, was killed,
	// lost its network): a standby takes the lease once it expires, between
	// about 2/3 and 4/3 of LeaseTTL after the death, because the holder
	// renewed up to RenewInterval (LeaseTTL/3) before and the standby tries
	// only that often. Measured on PostgreSQL (three processes, kill -9 of
	// the holder until the first commit of the next one, 8 kills each, with
	// internal/faulttest): 10s: 7.4-10.5s (median 9.1s); 5s: 3.6-5.1s
	// (4.9s); 3s: 2.2-3.0s (2.9s); 2s: 0.9-2.1s (1.8s).
	//
	// It does not bound a holder that is frozen rather than dead (a
	// stopped VM, a long swap or GC pause, SIGSTOP). A standby takes the
	// lease as before, but on PostgreSQL a frozen holder caught inside a
	// unit keeps its transaction open, and an open transaction holds back
	// the feed of every consumer until it ends: the holder wakes, its commit
	// fails (its lease is gone) and the standby carries on. Measured with a
	// 5s lease: freezing the holder for 8s stalled delivery 3.5s in two of
	// four rounds (the holder was between units) and the whole 8s in the
	// other two; with a 3s lease and a 6s freeze, 2.1s twice and 6.0s twice.
	// To bound this too, set PostgreSQL's idle_in_transaction_session_timeout
	// to about LeaseTTL for the consumers' connections (a runtime parameter
	// of their pool): the server then ends the frozen transaction. Measured
	// with a 5s lease, 12s freezes stalled delivery 4.0-4.8s in three of
	// four rounds and the whole 12.0s in the fourth; with a 5s timeout
	// added, 4.2-5.0s in all six. Handlers must then not sit idle inside a
	// unit that long.
	//
	// The default, 5s, is a choice between two failures. A shorter lease
	// replaces a dead process sooner, but a live holder whose renewals fail
	// for a whole LeaseTTL gives its lease up: with 2s, each of two
	// PostgreSQL restarts (down 1s and 2s) cost the live holder its lease
	// (a needless failover, and redelivery of its unit), while with 5s
	// neither did. A longer lease rides out longer outages but leaves a
	// dead process's events waiting: 10s meant up to 10.5s without
	// delivery. 5s also leaves each call to the Source, which times out
	// after LeaseTTL, room on a loaded server. Lower it (2-3s) when quick
	// takeover matters more than riding out database restarts; raise it
	// when restarts last longer. Defaults to DefaultLeaseTTL (5s).
	LeaseTTL time.Duration
	// RenewInterval is how often the holder renews its lease, and how often
	// a standby tries to take it. It must be shorter than LeaseTTL.
	// Defaults to LeaseTTL / 3.
	RenewInterval time.Duration
	// BatchSize is how many events one read of the feed returns. Events are
	// still delivered one at a time. Defaults to DefaultBatchSize (100).
	BatchSize int
	// CommitBatch is how many consecutive events, already read, may share
	// one unit: the handler's writes for all of them and the checkpoint
	// after the last commit together, paying one commit (and one fsync)
	// instead of one per event. A lone event still commits at once, so this
	// adds no latency when the feed is quiet. A Nack rolls the whole unit
	// back and redelivers from its first event: delivery stays at least
	// once, effects exactly once. After a Nack behind a unit's head, the
	// events before the Nacked one are delivered again in a unit of their
	// own, at once, so the Nacked event then heads its unit: a failure is
	// only ever retried, and counted, where no other event's writes share
	// its unit. With more than 1, an Ack no longer means
	// "committed": wait for OnCommitted. Defaults to DefaultCommitBatch (1:
	// every event commits by itself).
	CommitBatch int
	// FallbackPollInterval is how often the feed is read while
	// Source.PushHealthy reports false (PostgreSQL's LISTEN connection is
	// down, say). While push is healthy the consumer waits on Source.Wake
	// instead. Defaults to DefaultFallbackPollInterval (1s).
	FallbackPollInterval time.Duration
	// SafetyPollInterval is how often the feed is re-read even while push
	// is healthy and nothing woke the consumer. Push is not a guarantee: on
	// PostgreSQL the wake-up is sent just after the commit, so a writer that
	// dies between its commit and its NOTIFY leaves a committed event that
	// nobody announces. This poll bounds how long such an event waits.
	// Defaults to DefaultSafetyPollInterval (30s).
	SafetyPollInterval time.Duration
	// PendingBackoffMin and PendingBackoffMax bound the exponential backoff
	// of re-reads while Batch.Pending reports events that are committed but
	// not readable yet, because an older transaction is still open.
	// Defaults to DefaultPendingBackoffMin (2ms) and DefaultPendingBackoffMax
	// (100ms), or PendingBackoffMin when that is larger.
	PendingBackoffMin time.Duration
	PendingBackoffMax time.Duration
	// NackBackoffMin and NackBackoffMax bound the exponential backoff before
	// a Nacked event is delivered again. The same event is redelivered until
	// it is Acked: nothing behind it is delivered meanwhile. Defaults to
	// DefaultNackBackoffMin (100ms) and DefaultNackBackoffMax (5s), or
	// NackBackoffMin when that is larger.
	NackBackoffMin time.Duration
	NackBackoffMax time.Duration
	// Logger receives lease changes and errors. Defaults to slog.Default().
	Logger *slog.Logger
	// Clock judges how long renewals have been failing. Defaults to
	// events.SystemClock.
	Clock events.Clock
	// Partition, when its Count is above 1, delivers only that partition of
	// the topic (by a hash of Partition.Key): Subscribers of the other
	// partitions, under ConsumerNames of their own (PartitionName), share
	// the topic and deliver concurrently. Defaults to the whole topic.
	Partition Partition
	// OnCommitted, when set, is called after every successful checkpoint
	// commit with the checkpoint name and the committed position, including
	// an Advance past events the consumer's topic does not match. Tests and
	// the consistency layer use it to await progress instead of sleeping.
	// It runs on the delivering goroutine: it must not block. Defaults to
	// nil.
	OnCommitted func(name string, tok events.Token)
	// OnLeaseChange, when set, is called when a consumer acquires, loses or
	// releases its lease, so operators and tests observe failovers without
	// parsing logs (Subscriber.Status has the current state and counts).
	// It runs on the consumer's goroutines: it must not block. Defaults to
	// nil.
	OnLeaseChange func(LeaseEvent)
}

func (c *SubscriberConfig) withDefaults() SubscriberConfig {
	out := SubscriberConfig{}
	if c != nil {
		out = *c
	}
	out.Owner = cmp.Or(out.Owner, defaultOwner())
	out.LeaseTTL = cmp.Or(out.LeaseTTL, DefaultLeaseTTL)
	out.RenewInterval = cmp.Or(out.RenewInterval, out.LeaseTTL/3)
	out.BatchSize = cmp.Or(out.BatchSize, DefaultBatchSize)
	out.CommitBatch = cmp.Or(out.CommitBatch, DefaultCommitBatch)
	out.FallbackPollInterval = cmp.Or(out.FallbackPollInterval, DefaultFallbackPollInterval)
	out.SafetyPollInterval = cmp.Or(out.SafetyPollInterval, DefaultSafetyPollInterval)
	out.PendingBackoffMin = cmp.Or(out.PendingBackoffMin, DefaultPendingBackoffMin)
	out.PendingBackoffMax = cmp.Or(out.PendingBackoffMax, max(DefaultPendingBackoffMax, out.PendingBackoffMin))
	out.NackBackoffMin = cmp.Or(out.NackBackoffMin, DefaultNackBackoffMin)
	out.NackBackoffMax = cmp.Or(out.NackBackoffMax, max(DefaultNackBackoffMax, out.NackBackoffMin))
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	if out.Clock == nil {
		out.Clock = events.SystemClock{}
	}
	return out
}

// Validate reports the first setting NewSubscriber would refuse, with the
// defaults applied as NewSubscriber applies them. A caller that builds
// subscribers from a configuration its own user wrote checks it once,
// under the user's name for it, rather than at each subscriber.
func (c *SubscriberConfig) Validate() error {
	d := c.withDefaults()
	return d.validate()
}

func (c *SubscriberConfig) validate() error {
	positive := func(field string, d time.Duration) error {
		if d <= 0 {
			return fmt.Errorf("feed: SubscriberConfig.%s is %s: use 0 for the default or a positive duration", field, d)
		}
		return nil
	}
	ordered := func(minField string, lo time.Duration, maxField string, hi time.Duration) error {
		if hi < lo {
			return fmt.Errorf("feed: SubscriberConfig.%s (%s) is below %s (%s): the backoff cannot shrink", maxField, hi, minField, lo)
		}
		return nil
	}
	if c.ConsumerName == "" {
		return errors.New("feed: SubscriberConfig.ConsumerName is empty: name the consumer after what it does (e.g. \"orders-projection\"); its checkpoint is stored under that name")
	}
	if err := c.validateName(); err != nil {
		return err
	}
	if c.CommitBatch < 0 {
		return fmt.Errorf("feed: SubscriberConfig.CommitBatch is %d: use 0 for the default or a positive count", c.CommitBatch)
	}
	if c.BatchSize < 0 {
		return fmt.Errorf("feed: SubscriberConfig.BatchSize is %d: use 0 for the default or a positive count", c.BatchSize)
	}
	if err := c.Partition.Validate(); err != nil {
		return fmt.Errorf("feed: SubscriberConfig.Partition: %w", err)
	}
	if c.LeaseTTL > 0 && c.LeaseTTL < MinLeaseTTL {
		return fmt.Errorf("feed: SubscriberConfig.LeaseTTL is %s: use at least %s (renewals come every RenewInterval, LeaseTTL / 3 by default, and each takes a round trip to the store)",
			c.LeaseTTL, MinLeaseTTL)
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"LeaseTTL", c.LeaseTTL},
		{"RenewInterval", c.RenewInterval},
		{"FallbackPollInterval", c.FallbackPollInterval},
		{"SafetyPollInterval", c.SafetyPollInterval},
		{"PendingBackoffMin", c.PendingBackoffMin},
		{"PendingBackoffMax", c.PendingBackoffMax},
		{"NackBackoffMin", c.NackBackoffMin},
		{"NackBackoffMax", c.NackBackoffMax},
	} {
		if err := positive(f.name, f.d); err != nil {
			return err
		}
	}
	if c.RenewInterval >= c.LeaseTTL {
		return fmt.Errorf("feed: SubscriberConfig.RenewInterval (%s) must be shorter than LeaseTTL (%s), or the lease expires between renewals (LeaseTTL / 3 is a good choice)",
			c.RenewInterval, c.LeaseTTL)
	}
	if err := ordered("PendingBackoffMin", c.PendingBackoffMin, "PendingBackoffMax", c.PendingBackoffMax); err != nil {
		return err
	}
	return ordered("NackBackoffMin", c.NackBackoffMin, "NackBackoffMax", c.NackBackoffMax)
}

// defaultOwner is "<hostname>-<pid>": readable enough to find the process
// that holds a lease. The instance id (newInstanceID) makes it unique.
func defaultOwner() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// newInstanceID returns the random id a Subscriber or Processor appends to
// its Owner. The configured Owner cannot be trusted to be unique (every
// replica of a StatefulSet may run under the same name, and a restarted
// process under its predecessor's), and the stores treat an Acquire by
// the holder's own owner string as its own retry, not as another
// consumer's.
func newInstanceID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validateName keeps checkpoint names one per subscription: a name with
// '/' or '#' of its own could spell another consumer's checkpoint for
// another topic (CheckpointName), or a processor's partition
// (PartitionName), and the two would share a lease and a position without
// a word. A partition's own name is the one form allowed to hold them.
func (c *SubscriberConfig) validateName() error {
	name := c.ConsumerName
	if base, i, n, ok := ParsePartitionName(name); ok && c.Partition.Count == n && c.Partition.Index == i {
		name = base
	}
	if strings.ContainsAny(name, "/#") {
		return fmt.Errorf("feed: SubscriberConfig.ConsumerName %q holds '/' or '#': checkpoint names use '/' before a topic and '#' before a partition, so the name could be another consumer's checkpoint; use '.' or '-' instead (a partitioned subscriber's name is PartitionName(base, Partition.Index, Partition.Count))", name)
	}
	return nil
}

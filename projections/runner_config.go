package projections

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// Defaults of RunnerConfig.
const (
	// DefaultMaxAttempts is how many times an event is tried before the
	// failure policy applies.
	DefaultMaxAttempts = 5
	// DefaultBackoffMin and DefaultBackoffMax bound the exponential backoff
	// between attempts.
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 5 * time.Second
	// DefaultStatusPollInterval is how often a halted processor, and a
	// Rebuild waiting for its switch, re-read the projection's state to
	// notice changes made by other processes.
	DefaultStatusPollInterval = 2 * time.Second
	// DefaultCloseTimeout is how long Stop waits for handlers in flight.
	DefaultCloseTimeout = 30 * time.Second
	// DefaultCommitBatch is how many already-read events a live processor
	// may apply in one unit. The batching is adaptive: a processor that is
	// caught up reads one event at a time and commits each at once, and
	// one that is behind commits up to this many per transaction.
	DefaultCommitBatch = 100
	// DefaultRebuildCommitBatch is how many events a rebuild's processor
	// commits in one unit (and at least how many it reads at once). Each
	// unit costs a few round trips and holds the feed's read horizon while
	// it runs: measured on a 2-core machine, units of 500 rebuilt about
	// 0.15 as fast as a raw read, 2,000 about 0.29 and 3,000 about 0.32,
	// holding the horizon about 14 ms a unit.
	DefaultRebuildCommitBatch = 3000
	// DefaultDropBatch is how many rows of an old generation one short
	// transaction deletes.
	DefaultDropBatch = 500
)

// FailurePolicy says what happens to an event whose handler failed
// RunnerConfig.MaxAttempts times.
type FailurePolicy string

const (
	// HaltOnFailure stops the projection at the failing event: its checkpoint stays
	// before it, Status reports StateHalted with the reason, and nothing is
	// attempted until Resume. Readers keep reading the last good state. The
	// safe default: no event is ever skipped.
	HaltOnFailure FailurePolicy = "halt"
	// DeadLetterOnFailure stores the event in the dead letters (see
	// Runner.DeadLetters) with the reason, in the same unit of work that
	// moves the checkpoint past it, and carries on with the next event.
	// A rebuild halts all the same (see Runner.Rebuild): a generation that
	// skipped an event must not replace one that has it.
	DeadLetterOnFailure FailurePolicy = "dead_letter"
)

// RunnerConfig configures a Runner. Source and Projections are required.
type RunnerConfig struct {
	// Source is the feed the projections consume and where their read
	// models live: a *pgstore.Store (read models in PostgreSQL, in the
	// store's schema) or a *memstore.Store (read models in memory, kept
	// with the store). Required.
	Source feed.Source
	// Store gives the events.Registry handlers decode with, and is what
	// Appender returns. Defaults to Source, which is an events.Store too.
	Store events.Store
	// Projections are the projections to run. Names must be unique.
	// Required.
	Projections []*Projection
	// Tracker, when set, is advanced after every commit of a projection's
	// processor, under its checkpoint name: the projection's name (a
	// partitioned projection is registered as a Tracker.Group of its
	// partitions' checkpoints under its name), so waits on the name see the
	// lowest partition. A Tracker watching the store's checkpoints hears
	// the same names from other processes. Defaults to nil.
	Tracker *consistency.Tracker
	// Catalog, when set, receives every projection's consistency.ReadModel
	// in NewRunner. Defaults to nil.
	Catalog *consistency.Catalog
	// MaxAttempts is how many times an event is tried before OnFailure
	// applies (feed.ProcessorConfig.MaxAttempts). Attempts are counted per
	// event in this process. Defaults to DefaultMaxAttempts (5).
	MaxAttempts int
	// BackoffMin and BackoffMax bound the exponential backoff before an
	// event is tried again (the feed subscriber's NackBackoffMin/Max).
	// BackoffMin defaults to DefaultBackoffMin (100ms), or to BackoffMax
	// when only that is set and is smaller; BackoffMax defaults to
	// DefaultBackoffMax (5s), or to BackoffMin when that is larger.
	BackoffMin time.Duration
	BackoffMax time.Duration
	// OnFailure is what happens after MaxAttempts failures: the
	// processor's Halt or DeadLetter policy. Defaults to HaltOnFailure.
	OnFailure FailurePolicy
	// OnUpdate, when set, is called after each committed read-model change
	// of the active generation (a WebSocket hub for live views plugs in
	// here). It runs on the committing goroutine, after the commit and
	// before this Runner advances the Tracker. The Tracker can learn of a
	// commit first, though: from the store's checkpoint notifications, or
	// by reading the stored position (its first answer for a name, and its
	// polls), so a token wait returning does not mean OnUpdate has been
	// called for every change up to the token; a caller that needs the
	// calls waits for them. It must not block. Defaults to nil.
	OnUpdate func(Update)
	// OnCommitted, when set, is called after each move of a processor's
	// checkpoint (a unit's commit, or an advance past events the projection
	// does not handle), with the checkpoint name (the projection's name, or
	// name + "@rebuild-<generation>" for a rebuild; "#i/n" is appended for
	// partitions) and its new position. Tests and metrics await progress
	// with it. It is called before this Runner advances the Tracker; a
	// Tracker that also hears the store's checkpoint notifications (its
	// Watcher) can learn of a commit first, so a token wait returning does
	// not mean every commit up to the token was reported here: await the
	// report itself. It must not block. Defaults to nil.
	OnCommitted func(consumer string, pos events.Token)
	// OnHalt, when set, is called when a projection (or its rebuild)
	// halts. It must not block. Defaults to nil.
	OnHalt func(*HaltedError)
	// OnDeadLetter, when set, is called after a dead letter is stored. It
	// must not block. Defaults to nil.
	OnDeadLetter func(DeadLetter)
	// Middleware is added to the Runner's own routers after
	// middleware.Recoverer. With AddHandlers, your router's middleware
	// applies to the live processors instead, and this to restarts only.
	// Rebuilds run without a router (feed.Processor.Run), so no middleware
	// sees them. A retry middleware (Watermill's middleware.Retry) does
	// not retry a failed handler: the failed call's writes are still in
	// the event's unit, so a second call in that unit runs nothing and
	// returns feed.ErrUnitFailed, and the processor retries the event in a
	// new unit under its own policy (MaxAttempts and the backoffs).
	// Defaults to none.
	Middleware []message.HandlerMiddleware
	// CommitBatch is at most how many consecutive, already-read events a
	// live processor applies in one unit of work (one transaction and one
	// checkpoint write on PostgreSQL; see feed.SubscriberConfig.CommitBatch).
	// Only a processor that is behind fills a unit, so a quiet feed's
	// latency is the same as with 1. A failing event rolls its unit back;
	// the events before it are then committed by themselves, and it is
	// retried at the head of a unit of its own, so failures are counted,
	// and a halt stops, exactly at the failing event. Set 1 to commit every
	// event by itself. Defaults to DefaultCommitBatch (100).
	CommitBatch int
	// RebuildCommitBatch is CommitBatch for rebuilds' processors, which
	// replay the whole feed. On PostgreSQL a unit's transaction holds the
	// feed's read horizon back while it runs (see pgstore), so keep units
	// short. Defaults to DefaultRebuildCommitBatch (3,000).
	RebuildCommitBatch int
	// DropBatch is how many rows of an old generation one short
	// transaction deletes, after a rebuild switched generations: a big read
	// model is dropped in many short transactions, so the drop never holds
	// the feed back for long. Defaults to DefaultDropBatch (500).
	DropBatch int
	// Subscriber is a template for the subscribers of every processor
	// (owner, lease TTL, batch size, poll intervals). ConsumerName,
	// CommitBatch and OnCommitted must be left empty (the processors set
	// them); NackBackoffMin/Max must be left empty when BackoffMin/Max are
	// set; an empty Logger or Clock is the Runner's. Its LeaseTTL (default
	// feed.DefaultLeaseTTL) is how long a projection waits for another
	// process to take over when the process delivering it dies: about 2/3
	// to 4/3 of it. It bounds failover only when that process died; one
	// that is frozen mid-unit holds the feed until it wakes
	// (feed.SubscriberConfig.LeaseTTL has the measurements and the remedy).
	// OnLeaseChange hears every partition's lease changes. Defaults to the
	// feed package defaults.
	Subscriber *feed.SubscriberConfig
	// StatusPollInterval is how often a halted processor, and the Runner's
	// monitor (rebuilds to start, switch or stop, generations to drop,
	// requests to serve: RequestRebuild, RequestReset), re-read the state in
	// the store, to notice a Resume, a Rebuild or a switch made by another
	// process; the processors look for dead-letter replay requests
	// (Runner.RequestReplay, feed.RequestReplay) as often. Changes made by
	// this runner are noticed at once. Defaults to DefaultStatusPollInterval (2s).
	StatusPollInterval time.Duration
	// CloseTimeout bounds how long Stop waits for handlers in flight.
	// Defaults to DefaultCloseTimeout (30s).
	CloseTimeout time.Duration
	// Logger receives retries, halts, dead letters and switches. Defaults
	// to slog.Default().
	Logger *slog.Logger
	// Clock is the processors' subscribers' clock, unless Subscriber has
	// one. Defaults to events.SystemClock.
	Clock events.Clock
}

func (c *RunnerConfig) withDefaults() RunnerConfig {
	out := RunnerConfig{}
	if c != nil {
		out = *c
	}
	if out.Store == nil {
		out.Store, _ = out.Source.(events.Store)
	}
	out.MaxAttempts = cmp.Or(out.MaxAttempts, DefaultMaxAttempts)
	if sc := out.Subscriber; sc == nil || (sc.NackBackoffMin == 0 && sc.NackBackoffMax == 0) {
		if out.BackoffMin == 0 && out.BackoffMax > 0 {
			// A caller who only capped the backoff must not be refused for
			// a minimum they never set.
			out.BackoffMin = min(DefaultBackoffMin, out.BackoffMax)
		}
		out.BackoffMin = cmp.Or(out.BackoffMin, DefaultBackoffMin)
		out.BackoffMax = cmp.Or(out.BackoffMax, max(DefaultBackoffMax, out.BackoffMin))
	}
	out.OnFailure = cmp.Or(out.OnFailure, HaltOnFailure)
	out.StatusPollInterval = cmp.Or(out.StatusPollInterval, DefaultStatusPollInterval)
	out.CloseTimeout = cmp.Or(out.CloseTimeout, DefaultCloseTimeout)
	out.CommitBatch = cmp.Or(out.CommitBatch, DefaultCommitBatch)
	out.RebuildCommitBatch = cmp.Or(out.RebuildCommitBatch, DefaultRebuildCommitBatch)
	out.DropBatch = cmp.Or(out.DropBatch, DefaultDropBatch)
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	if out.Clock == nil {
		out.Clock = events.SystemClock{}
	}
	return out
}

func (c *RunnerConfig) validate() error {
	switch {
	case c.Source == nil:
		return errors.New("projections: RunnerConfig.Source is nil (pass the *pgstore.Store or *memstore.Store the events are in)")
	case c.Store == nil:
		return errors.New("projections: RunnerConfig.Store is nil and Source is not an events.Store")
	case len(c.Projections) == 0:
		return errors.New("projections: RunnerConfig.Projections is empty (define them with projections.New and projections.On)")
	case c.MaxAttempts < 1:
		return fmt.Errorf("projections: RunnerConfig.MaxAttempts is %d: use 0 for the default or a positive count", c.MaxAttempts)
	case c.BackoffMin < 0:
		return fmt.Errorf("projections: RunnerConfig.BackoffMin is %s: use 0 for the default or a positive duration", c.BackoffMin)
	case c.BackoffMax < 0:
		return fmt.Errorf("projections: RunnerConfig.BackoffMax is %s: use 0 for the default or a positive duration", c.BackoffMax)
	case c.BackoffMax < c.BackoffMin:
		return fmt.Errorf("projections: RunnerConfig.BackoffMax (%s) is below BackoffMin (%s): raise BackoffMax or lower BackoffMin", c.BackoffMax, c.BackoffMin)
	case c.OnFailure != HaltOnFailure && c.OnFailure != DeadLetterOnFailure:
		return fmt.Errorf("projections: RunnerConfig.OnFailure is %q: use projections.HaltOnFailure or projections.DeadLetterOnFailure", c.OnFailure)
	case c.StatusPollInterval < 0:
		return fmt.Errorf("projections: RunnerConfig.StatusPollInterval is %s: use 0 for the default or a positive duration", c.StatusPollInterval)
	case c.CommitBatch < 1:
		return fmt.Errorf("projections: RunnerConfig.CommitBatch is %d: use 0 for the default or a positive count", c.CommitBatch)
	case c.RebuildCommitBatch < 1:
		return fmt.Errorf("projections: RunnerConfig.RebuildCommitBatch is %d: use 0 for the default or a positive count", c.RebuildCommitBatch)
	case c.CloseTimeout < 0:
		return fmt.Errorf("projections: RunnerConfig.CloseTimeout is %s: use 0 for the default or a positive duration", c.CloseTimeout)
	case c.DropBatch < 1:
		return fmt.Errorf("projections: RunnerConfig.DropBatch is %d: use 0 for the default or a positive count", c.DropBatch)
	}
	if sc := c.Subscriber; sc != nil {
		switch {
		case sc.ConsumerName != "":
			return errors.New("projections: RunnerConfig.Subscriber.ConsumerName is set: each processor is named after its projection; leave it empty")
		case sc.CommitBatch != 0:
			return errors.New("projections: RunnerConfig.Subscriber.CommitBatch is set: use RunnerConfig.CommitBatch and RebuildCommitBatch")
		case sc.OnCommitted != nil:
			return errors.New("projections: RunnerConfig.Subscriber.OnCommitted is set: use RunnerConfig.OnCommitted")
		case (sc.NackBackoffMin != 0 || sc.NackBackoffMax != 0) && (c.BackoffMin != 0 || c.BackoffMax != 0):
			return errors.New("projections: both RunnerConfig.BackoffMin/Max and Subscriber.NackBackoffMin/Max are set: set one of them")
		}
	}
	seen := map[string]bool{}
	for i, p := range c.Projections {
		if p == nil {
			return fmt.Errorf("projections: RunnerConfig.Projections[%d] is nil", i)
		}
		if seen[p.name] {
			return fmt.Errorf("projections: projection %q is listed twice in RunnerConfig.Projections", p.name)
		}
		seen[p.name] = true
	}
	return nil
}

package feed

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/converge-es/converge/events"
)

// Defaults of ProcessorConfig.
const (
	// DefaultProcessorCommitBatch bounds how many already-read events a
	// processor applies in one unit while it is behind. A caught-up
	// processor reads one event at a time, so each still commits alone.
	DefaultProcessorCommitBatch = 100
	// DefaultMaxAttempts is how many times a failing event is handled
	// before the failure policy gives up on it.
	DefaultMaxAttempts = 5
	// DefaultGateTimeout is how long a gated event waits, before its unit
	// begins, for its read models to catch up.
	DefaultGateTimeout = 250 * time.Millisecond
	// DefaultHaltCheckInterval is how often a halted partition looks for a
	// resume made by another process.
	DefaultHaltCheckInterval = time.Second
	// DefaultReplayCheckInterval is how often a processor delivering a
	// partition looks for requests to replay its dead letters.
	DefaultReplayCheckInterval = time.Second
)

// OnFailure is what a processor does with an event whose handler failed
// MaxAttempts times.
type OnFailure int

const (
	// Halt stops the partition at the event, recorded with the error, until
	// Processor.Resume (or `converge projections resume`): nothing after it
	// is applied, so no read model or process skips a step. The default.
	Halt OnFailure = iota
	// DeadLetter records the event with the error and moves past it in the
	// same unit: later events are applied without it.
	DeadLetter
)

// ProcessorConfig configures a Processor. Name is required.
type ProcessorConfig struct {
	// Name is the processor's durable name: its checkpoints, leases,
	// membership, halts and dead letters are stored under it. Required;
	// valid UTF-8 without '#', '/' or control characters (events.IsControl):
	// '#' and '/' separate partitions and topics in checkpoint names,
	// and short enough that a partition's name (see
	// PartitionName), "/" and an event id fit a row key (MaxRowKeyLength):
	// its dead letters are keyed so.
	Name string
	// Types and Categories filter the feed in the store (see Filter): the
	// processor is handed only what it handles, and its checkpoint moves
	// past the rest without a unit per event. Empty: everything.
	Types      []string
	Categories []string
	// Handles names what the handler handles beyond Types and Categories,
	// as opaque strings: a saga engine lists its saga types, each handler
	// and each timeout (saga.Engine.Handles). Each process records its
	// filter and Handles beside its membership, and the partitions are
	// split only among the live processes that handle everything any of
	// them does; the others stand by, and say so in a warning. So while two
	// builds of an application run side by side (a rolling deploy, a
	// rollback), an event only the newer build handles is never taken by
	// an older process, which would move the shared checkpoint past it for
	// good (filtered out of its reads, or acked by a handler that does not
	// know it). If neither build handles everything the other does (one
	// dropped a handler the other has), the processor delivers nothing
	// until one build's processes are gone. An older process learns of a
	// newer one at its next membership heartbeat, at once where the store
	// announces membership changes (both stores do): an event appended in
	// between, before it stood by, may still be filtered out by it:
	// Processor.AwaitTakeover waits until this process delivers what it is
	// assigned (converge.NewClient's Start does), after which an event the
	// new build appends is safe. What a live process handles must be known: while
	// one has not recorded it (its write failed, or it runs a converge
	// release from before these records, during an upgrade of converge
	// itself) or the records cannot be read, a process that learns of a
	// new member stands by rather than guess. Defaults to none: the filter
	// alone.
	Handles []string
	// Partitions splits the processor into this many partitions by a hash
	// of PartitionKey: each is processed in order, all in parallel, shared
	// between the processes running the processor. Changing it starts the
	// new partitions from the lowest position of the old ones, and they
	// skip the events that an old partition had handled already, so each
	// event is still handled once. The partitions deliver nothing until
	// the processor's record of its old count is read: a store that does
	// not answer at the start delays them (with a warning), never sends
	// them back to the beginning of the feed. Stop the processes running
	// the old count before starting one with the new: partitions of both
	// counts running at once would handle the same events. Defaults to 1.
	Partitions int
	// PartitionKey is what is hashed. Defaults to ByStream. Changing it
	// alone would move events between partitions behind their
	// checkpoints, so some would be handled twice and some never: a
	// processor of more than one partition then refuses to start
	// (ErrPartitionKeyChanged, from AddHandlers or Run; when its record
	// could not be read then, its partitions refuse once it can be, and
	// say so in Status as their LastError). Change Partitions
	// with it (the new partitions skip what the old ones handled, by the
	// old key), or give the processor a new Name (it starts over).
	PartitionKey PartitionKey
	// CommitBatch bounds how many consecutive already-read events share one
	// unit (see SubscriberConfig.CommitBatch). Defaults to
	// DefaultProcessorCommitBatch (100).
	CommitBatch int
	// MaxAttempts is how many times an event is handled before OnFailure
	// applies. Between attempts the event is delivered again after the
	// subscriber's Nack backoff. A handler that fails once its delivery's
	// context is cancelled (the lease was lost, or the processor is
	// stopping) has not used an attempt; a deadline that ends it (a
	// Timeout middleware) has. Defaults to DefaultMaxAttempts (5).
	MaxAttempts int
	// OnFailure is what happens after MaxAttempts failures. Defaults to
	// Halt.
	OnFailure OnFailure
	// Gate, when set, names the read models the handler will read for an
	// event and the token they must reach; the processor waits for them
	// with Waiter before the event's unit begins, up to GateTimeout, and
	// tells the handler the outcome (GateFromContext). The handler decides
	// what to do when they did not catch up (a saga parks the step).
	Gate GateFunc
	// Waiter waits for gated read models. Required with Gate.
	Waiter Waiter
	// GateTimeout bounds a gate's wait. Defaults to DefaultGateTimeout.
	GateTimeout time.Duration
	// HaltCheckInterval is how often a halted partition checks whether
	// another process resumed it. Defaults to DefaultHaltCheckInterval.
	HaltCheckInterval time.Duration
	// ReplayCheckInterval is how often the processor looks for requests to
	// replay its dead letters (RequestReplay) while it delivers a partition
	// here. Defaults to DefaultReplayCheckInterval.
	ReplayCheckInterval time.Duration
	// Subscriber tunes the partitions' subscribers (leases, reads,
	// backoffs). Its ConsumerName, CommitBatch and OnCommitted must be
	// left empty: the processor sets them (a value there is an error, not
	// silently replaced). Defaults to the SubscriberConfig defaults.
	Subscriber SubscriberConfig
	// OnCommitted is called after every commit of a partition with its
	// checkpoint name and position. It must not block.
	OnCommitted func(checkpoint string, pos events.Token)
	// OnHalt, when set, is called in the process where a partition halts,
	// with the halt's record. It must not block. Defaults to nil.
	OnHalt func(HaltRecord)
	// OnDeadLetter, when set, is called once the unit that stored a dead
	// letter has committed, with its record. It must not block. Defaults to
	// nil.
	OnDeadLetter func(DeadLetterRecord)
	// Logger receives the processor's own lines: handler failures, halts,
	// dead letters, partition records. Its partitions' subscriber lines
	// (leases, reads) go to Subscriber.Logger when that is set, else here.
	// Defaults to Subscriber.Logger, else slog.Default().
	Logger *slog.Logger
}

func (c *ProcessorConfig) withDefaults() ProcessorConfig {
	out := ProcessorConfig{}
	if c != nil {
		out = *c
	}
	out.Partitions = cmp.Or(out.Partitions, 1)
	out.PartitionKey = cmp.Or(out.PartitionKey, ByStream)
	out.CommitBatch = cmp.Or(out.CommitBatch, DefaultProcessorCommitBatch)
	out.MaxAttempts = cmp.Or(out.MaxAttempts, DefaultMaxAttempts)
	out.GateTimeout = cmp.Or(out.GateTimeout, DefaultGateTimeout)
	out.HaltCheckInterval = cmp.Or(out.HaltCheckInterval, DefaultHaltCheckInterval)
	out.ReplayCheckInterval = cmp.Or(out.ReplayCheckInterval, DefaultReplayCheckInterval)
	if out.Logger == nil {
		out.Logger = cmp.Or(out.Subscriber.Logger, slog.Default())
	}
	return out
}

// validHandles reports whether every entry of ProcessorConfig.Handles is
// printable text a row can hold.
func validHandles(hs []string) bool {
	for _, h := range hs {
		if h == "" || len(h) > MaxLeaseTextBytes || !utf8.ValidString(h) || strings.IndexFunc(h, unicode.IsControl) >= 0 {
			return false
		}
	}
	return true
}

// eventIDLength is the length of an event id, a UUID in its text form.
const eventIDLength = 36

func (c *ProcessorConfig) validate() error {
	switch {
	case strings.TrimSpace(c.Name) == "":
		return errors.New("feed: ProcessorConfig.Name is empty: name the processor after what it does (e.g. \"order-summary\"); its checkpoints are stored under it")
	case strings.ContainsAny(c.Name, "#/\x00"):
		return fmt.Errorf("feed: ProcessorConfig.Name %q contains '#', '/' or NUL: '#' and '/' separate partitions and topics in checkpoint names, so the name could be another consumer's; use '.' or '-' instead", c.Name)
	case !utf8.ValidString(c.Name) || strings.ContainsFunc(c.Name, events.IsControl):
		// Refused here, not at the first write of its record: row keys
		// refuse them, and the processor's records are keyed by its name.
		return fmt.Errorf("feed: ProcessorConfig.Name %q holds invalid UTF-8 or a control character (C0, C1, U+2028, U+2029), which row keys refuse: its records, halts and dead letters are keyed by it; use printable text", c.Name)
	case c.Partitions < 1 || c.Partitions > MaxPartitions:
		return fmt.Errorf("feed: ProcessorConfig.Partitions is %d: use 1..%d", c.Partitions, MaxPartitions)
	case len(PartitionName(c.Name, c.Partitions-1, c.Partitions))+len("/")+eventIDLength > MaxRowKeyLength:
		// A dead letter is keyed by the partition's name and the event's
		// id: a longer name would make every dead letter unstorable and
		// leave the failing partition retrying for ever.
		return fmt.Errorf("feed: ProcessorConfig.Name is %d bytes, too long for %d partition(s): a partition's name, '/' and an event id (%d bytes) key its dead letters, at most %d bytes; use a shorter name",
			len(c.Name), c.Partitions, eventIDLength, MaxRowKeyLength)
	case !validHandles(c.Handles):
		return fmt.Errorf("feed: ProcessorConfig.Handles holds an empty string, one over %d bytes, or one with invalid UTF-8 or a control character: name each thing handled in printable text", MaxLeaseTextBytes)
	case c.CommitBatch < 1:
		return fmt.Errorf("feed: ProcessorConfig.CommitBatch is %d: use 0 for the default or a positive count", c.CommitBatch)
	case c.MaxAttempts < 1:
		return fmt.Errorf("feed: ProcessorConfig.MaxAttempts is %d: use 0 for the default or a positive count", c.MaxAttempts)
	case c.OnFailure != Halt && c.OnFailure != DeadLetter:
		return fmt.Errorf("feed: ProcessorConfig.OnFailure is %d: use feed.Halt or feed.DeadLetter", c.OnFailure)
	case c.Gate != nil && c.Waiter == nil:
		return errors.New("feed: ProcessorConfig.Gate is set but Waiter is nil: pass the consistency.Tracker that follows the gated read models")
	case c.HaltCheckInterval < 0:
		return fmt.Errorf("feed: ProcessorConfig.HaltCheckInterval is %s: use 0 for the default or a positive duration", c.HaltCheckInterval)
	case c.ReplayCheckInterval < 0:
		return fmt.Errorf("feed: ProcessorConfig.ReplayCheckInterval is %s: use 0 for the default or a positive duration", c.ReplayCheckInterval)
	case c.GateTimeout < 0:
		return fmt.Errorf("feed: ProcessorConfig.GateTimeout is %s: use 0 for the default or a positive duration", c.GateTimeout)
	case c.Subscriber.ConsumerName != "":
		return errors.New("feed: ProcessorConfig.Subscriber.ConsumerName is set: the processor names its partitions after ProcessorConfig.Name; leave it empty")
	case c.Subscriber.CommitBatch != 0:
		return errors.New("feed: ProcessorConfig.Subscriber.CommitBatch is set: use ProcessorConfig.CommitBatch")
	case c.Subscriber.Partition != (Partition{}):
		return errors.New("feed: ProcessorConfig.Subscriber.Partition is set: use ProcessorConfig.Partitions and PartitionKey")
	case c.Subscriber.OnCommitted != nil:
		return errors.New("feed: ProcessorConfig.Subscriber.OnCommitted is set: use ProcessorConfig.OnCommitted")
	}
	if err := (Partition{Count: c.Partitions, Key: c.PartitionKey}).Validate(); err != nil {
		return err
	}
	// Refused here, once, rather than by every read of every partition.
	if err := (Filter{Types: c.Types, Categories: c.Categories}).Validate(); err != nil {
		return fmt.Errorf("feed: ProcessorConfig.Types or Categories: %w", err)
	}
	return nil
}

// PartitionName is the checkpoint name of partition index of a processor
// split into count partitions: the processor's name when count is 1, so a
// processor that is not split keeps the checkpoint it always had, else
// "name#index/count".
func PartitionName(name string, index, count int) string {
	if count <= 1 {
		return name
	}
	return fmt.Sprintf("%s#%d/%d", name, index, count)
}

package feed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/internal/rowjson"
	"github.com/converge-es/converge/internal/signal"
)

// Rows where the runtime keeps its own records, beside the read models.
const (
	// RuntimeNamespace is the Rows namespace of converge's runtime.
	RuntimeNamespace = "converge"
	// HaltsTable holds one row per halted partition, keyed by its
	// checkpoint name.
	HaltsTable = "halts"
	// DeadLettersTable holds one row per dead-lettered event, keyed by
	// "<checkpoint name>/<event id>".
	DeadLettersTable = "dead_letters"
)

// Halt is the record of a halted partition.
type HaltRecord struct {
	Checkpoint string       `json:"checkpoint"`
	EventID    string       `json:"event_id"`
	Type       string       `json:"type"`
	StreamID   string       `json:"stream_id"`
	Token      events.Token `json:"token"`
	Reason     string       `json:"reason"`
	Attempts   int          `json:"attempts"`
	At         time.Time    `json:"at"`
}

// DeadLetterRecord is an event a processor gave up on under the DeadLetter
// policy. The partition's checkpoint moved past it in the unit that stored
// the record, so it is never applied unless someone acts on it.
type DeadLetterRecord struct {
	Checkpoint string          `json:"checkpoint"`
	Event      events.Envelope `json:"event"`
	Reason     string          `json:"reason"`
	Attempts   int             `json:"attempts"`
	At         time.Time       `json:"at"`
}

// attempt counts the failures of one event in one partition.
type attempt struct {
	failures int
	last     string
}

// PartitionState is what a partition of this process is doing.
type PartitionState string

const (
	// PartitionIdle: not owned by this process (another member holds it),
	// not started, or paused (Processor.Pause).
	PartitionIdle PartitionState = "idle"
	// PartitionStandby: owned, waiting for the lease (a previous holder's
	// has not expired yet).
	PartitionStandby PartitionState = "standby"
	// PartitionActive: holding the lease, delivering.
	PartitionActive PartitionState = "active"
	// PartitionDegraded: holding or seeking the lease while the store
	// fails (see LastError).
	PartitionDegraded PartitionState = "degraded"
	// PartitionHalted: stopped at an event that failed MaxAttempts times.
	PartitionHalted PartitionState = "halted"
)

// partitionState is the in-process state of one partition.
type partitionState struct {
	index int
	name  string

	mu        sync.Mutex
	state     PartitionState
	since     time.Time
	pos       events.Token
	lastErr   string
	lastErrAt time.Time
	halt      *HaltRecord
	attempts  map[string]*attempt
	resumed   chan struct{}
	// consumer is the latest subscription's state (lease, degraded).
	consumer *consumerState
	// checked is set once the halt row was looked at under the current
	// lease: a halt written by another process (which held the partition
	// before) is found at the first delivery, without a read per event.
	checked bool
	// replayDue is set when replay requests wait for this partition, and
	// replayWake wakes its idle consumer to carry them out.
	replayDue  atomic.Bool
	replayWake signal.Broadcast
	// failedUnit and failedEvent name the unit and the event of the last
	// handler call that failed, and failedErr is its error (see
	// ErrUnitFailed).
	failedUnit  events.Unit
	failedEvent string
	failedErr   error
}

// unitFailed returns the error of a handler call for event eventID that
// failed in u, if one did. Only the same event is refused: a middleware
// that acknowledges failures (a poison queue) lets the unit go on, and the
// events after the failed one must then run as they always did.
func (ps *partitionState) unitFailed(u events.Unit, eventID string) error {
	if !comparableUnit(u) {
		return nil
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.failedUnit == u && ps.failedEvent == eventID {
		return ps.failedErr
	}
	return nil
}

func (ps *partitionState) setUnitFailed(u events.Unit, eventID string, err error) {
	if !comparableUnit(u) {
		return
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.failedUnit, ps.failedEvent, ps.failedErr = u, eventID, err
}

// comparableUnit reports whether u can be compared with ==: the stores'
// units are pointers, but a unit of another Source might be a value
// holding a map, which == would panic on.
func comparableUnit(u events.Unit) bool {
	return u != nil && reflect.TypeOf(u).Comparable()
}

func (ps *partitionState) mustCheckHalt() bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return !ps.checked || ps.halt != nil
}

func (ps *partitionState) haltChecked() {
	ps.mu.Lock()
	ps.checked = true
	ps.mu.Unlock()
}

func (ps *partitionState) attempt(eventID string) *attempt {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	a := ps.attempts[eventID]
	if a == nil {
		a = &attempt{}
		ps.attempts[eventID] = a
	}
	return a
}

// failedBefore returns the event's attempt record if it has failed before.
func (ps *partitionState) failedBefore(eventID string) *attempt {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.attempts[eventID]
}

func (ps *partitionState) succeeded(eventID string) {
	ps.mu.Lock()
	delete(ps.attempts, eventID)
	ps.mu.Unlock()
}

func (ps *partitionState) setState(s PartitionState) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.state == PartitionHalted && s != PartitionIdle {
		return
	}
	if s == PartitionActive {
		// A new lease, even one taken back at once after losing it: another
		// process may have halted the partition meanwhile. Look again.
		ps.checked = false
	}
	if ps.state != s {
		ps.state, ps.since = s, time.Now()
	}
}

// paused records that the partition waits for a pause to end
// (Processor.Pause): idle, unless halted, which it still is.
func (ps *partitionState) paused() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.state != PartitionIdle && ps.state != PartitionHalted {
		ps.state, ps.since = PartitionIdle, time.Now()
	}
}

func (ps *partitionState) setPosition(tok events.Token) {
	ps.mu.Lock()
	ps.pos = tok
	ps.mu.Unlock()
}

func (ps *partitionState) setError(err error) {
	ps.mu.Lock()
	ps.lastErr, ps.lastErrAt = err.Error(), time.Now()
	ps.mu.Unlock()
}

// giveUp applies the failure policy to an event that failed MaxAttempts
// times. The handler is not called again: under DeadLetter the record is
// written in the event's unit, which then commits the checkpoint past it;
// under Halt the partition stops here until resumed.
func (p *Processor) giveUp(ctx context.Context, ps *partitionState, env events.Envelope, a *attempt) error {
	reason := rowjson.TextWithin(a.last, maxReason)
	if p.cfg.OnFailure == DeadLetter {
		u, ok := events.UnitFromContext(ctx)
		fu, isFeed := u.(Unit)
		if !ok || !isFeed {
			return errors.New("feed: dead-lettering needs the delivery's unit in the handler context")
		}
		rec := DeadLetterRecord{Checkpoint: ps.name, Event: env, Reason: reason, Attempts: a.failures, At: time.Now().UTC()}
		b, err := rowjson.Marshal(rec)
		if err != nil {
			return fmt.Errorf("feed: encode dead letter: %w", err)
		}
		if verr := ValidateRowValue(b); verr != nil {
			// The record holds the whole event, which a row cannot: halt
			// instead, visibly, rather than retry the event for ever.
			// The note first, so that the cut takes the handler's error.
			reason = rowjson.TextWithin(fmt.Sprintf("not dead-lettered (its record cannot be stored: %v): %s", verr, a.last), maxReason)
			p.cfg.Logger.Error("feed: cannot dead-letter the event; halting the partition instead",
				"processor", p.cfg.Name, "partition", ps.index, "event_id", env.ID, "error", verr)
			return p.halt(ctx, ps, env, a, reason)
		}
		if err := fu.Rows().Put(ctx, RuntimeNamespace, DeadLettersTable, ps.name+"/"+env.ID, b, env.Token); err != nil {
			ps.setError(fmt.Errorf("store the dead letter of event %s: %w", env.ID, err))
			return fmt.Errorf("feed: store dead letter of event %s: %w", env.ID, err)
		}
		if p.cfg.OnDeadLetter != nil {
			fu.AfterCommit(func() { p.cfg.OnDeadLetter(rec) })
		}
		p.cfg.Logger.Error("feed: event dead-lettered after repeated failures; the partition moves on without it",
			"processor", p.cfg.Name, "partition", ps.index, "event_id", env.ID, "type", env.Type, "attempts", a.failures, "reason", reason)
		// Forgotten only once the dead letter commits: if a later event of
		// the unit fails, the unit rolls back and this event comes back at
		// the head of a unit of its own, where its record must still say
		// to give up instead of running the handler (and counting) afresh.
		fu.AfterCommit(func() { ps.succeeded(env.ID) })
		return nil
	}
	return p.halt(ctx, ps, env, a, reason)
}

// halt records the partition's halt on env, so every process and the CLI
// see it, and stops the partition here until resumed.
func (p *Processor) halt(ctx context.Context, ps *partitionState, env events.Envelope, a *attempt, reason string) error {
	rec := HaltRecord{
		Checkpoint: ps.name, EventID: env.ID, Type: env.Type, StreamID: env.StreamID, Token: env.Token,
		Reason: reason, Attempts: a.failures, At: time.Now().UTC(),
	}
	b, err := rowjson.Marshal(rec)
	if err != nil {
		return fmt.Errorf("feed: encode halt: %w", err)
	}
	if err := p.src.Rows().Put(ctx, RuntimeNamespace, HaltsTable, ps.name, b, env.Token); err != nil {
		// Retried at the next delivery; say so where operators look.
		ps.setError(fmt.Errorf("record the halt on event %s: %w", env.ID, err))
		p.cfg.Logger.Error("feed: cannot record the partition's halt; trying again at the next delivery",
			"processor", p.cfg.Name, "partition", ps.index, "event_id", env.ID, "error", err)
		return fmt.Errorf("feed: record halt of %s: %w", ps.name, err)
	}
	p.cfg.Logger.Error("feed: partition halted after repeated failures; resume it once the cause is fixed",
		"processor", p.cfg.Name, "partition", ps.index, "event_id", env.ID, "type", env.Type, "attempts", a.failures, "reason", reason)
	ps.mu.Lock()
	ps.halt = &rec
	ps.state, ps.since = PartitionHalted, time.Now()
	ps.mu.Unlock()
	if p.cfg.OnHalt != nil {
		p.cfg.OnHalt(rec)
	}
	return p.waitHalted(ctx, ps)
}

// waitHalted blocks while the partition is halted: its halt row exists,
// here or written by another process. It returns nil once resumed (the
// event is then delivered again with a fresh count), or ctx's error. No
// unit is in use while it blocks, so nothing is held open.
func (p *Processor) waitHalted(ctx context.Context, ps *partitionState) error {
	for {
		// The wake-up channel before the read: a Resume between the read
		// and the wait would otherwise find no channel to close, and the
		// partition would sleep a HaltCheckInterval with its halt gone.
		ps.mu.Lock()
		if ps.resumed == nil {
			ps.resumed = make(chan struct{})
		}
		resumed := ps.resumed
		ps.mu.Unlock()
		row, ok, err := p.src.Rows().Get(withoutUnit(ctx), RuntimeNamespace, HaltsTable, ps.name, LockNone)
		switch {
		case err != nil && ctx.Err() == nil:
			// Cannot tell: let the delivery fail and come back.
			return fmt.Errorf("feed: read halt of %s: %w", ps.name, err)
		case err == nil && !ok:
			ps.mu.Lock()
			wasHalted := ps.halt != nil
			if wasHalted {
				ps.halt = nil
				ps.attempts = map[string]*attempt{}
				ps.state, ps.since = PartitionActive, time.Now()
			}
			ps.mu.Unlock()
			if wasHalted {
				// Deliver again from the checkpoint with a fresh count.
				return errResumed
			}
			return nil
		case err == nil:
			var rec HaltRecord
			if json.Unmarshal(row.Value, &rec) == nil {
				ps.mu.Lock()
				ps.halt = &rec
				ps.state = PartitionHalted
				ps.mu.Unlock()
			}
		}
		t := time.NewTimer(p.cfg.HaltCheckInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-resumed:
		case <-t.C:
		}
		t.Stop()
	}
}

// errResumed makes the delivery after a resume start over from the
// checkpoint.
var errResumed = errors.New("feed: partition resumed; delivering again")

// Resume clears the halts of every partition of the processor, here and
// (through the halt rows) in every other process. It reports how many
// partitions were halted (how many halt rows it deleted). A partition
// halted here whose halt row is gone already (deleted in a unit of the
// caller's, say) is woken too: it finds the row gone at once instead of at
// its next HaltCheckInterval.
func (p *Processor) Resume(ctx context.Context) (int, error) {
	n := 0
	for _, ps := range p.parts {
		_, ok, err := p.src.Rows().Get(ctx, RuntimeNamespace, HaltsTable, ps.name, LockNone)
		if err != nil {
			return n, fmt.Errorf("feed: resume %s: %w", ps.name, err)
		}
		if ok {
			if err := p.src.Rows().Delete(ctx, RuntimeNamespace, HaltsTable, ps.name); err != nil {
				return n, fmt.Errorf("feed: resume %s: %w", ps.name, err)
			}
			n++
		}
		// Wake a halted partition here either way: it reads its halt row
		// again, and waits on while the row is still there.
		ps.mu.Lock()
		if ps.resumed != nil {
			close(ps.resumed)
			ps.resumed = nil
		}
		ps.mu.Unlock()
	}
	return n, nil
}

// DeadLetters lists the processor's dead letters, oldest partition first,
// up to limit (DefaultRowLimit when 0).
func (p *Processor) DeadLetters(ctx context.Context, limit int) ([]DeadLetterRecord, error) {
	return ListDeadLetters(ctx, p.src.Rows(), p.cfg.Name, limit)
}

// ListDeadLetters lists the dead letters of the processor named name from
// rows, up to limit (DefaultRowLimit when 0).
func ListDeadLetters(ctx context.Context, rows Rows, name string, limit int) ([]DeadLetterRecord, error) {
	if limit <= 0 {
		limit = DefaultRowLimit
	}
	var (
		out    []DeadLetterRecord
		decErr error
	)
	err := processorRows(ctx, rows, DeadLettersTable, name, func(r Row) bool {
		var rec DeadLetterRecord
		if err := json.Unmarshal(r.Value, &rec); err != nil {
			decErr = fmt.Errorf("feed: dead letter %s does not decode: %w", r.Key, err)
			return false
		}
		out = append(out, rec)
		return len(out) < limit
	})
	if err != nil {
		return nil, fmt.Errorf("feed: list dead letters of %s: %w", name, err)
	}
	if decErr != nil {
		return nil, decErr
	}
	return out, nil
}

// processorRows pages through table (in RuntimeNamespace), whose keys are
// "checkpoint/id", for the rows of the processor named name: keyed by its
// own checkpoint or one of its partitions', in key order, calling fn for
// each until fn returns false. A scan of the prefix name alone would also
// read the rows of every processor whose name starts with name (and of a
// subscriber's category checkpoints, "name/topic"), and a capped page of
// it could hold none of this processor's.
func processorRows(ctx context.Context, rows Rows, table, name string, fn func(Row) bool) error {
	for _, prefix := range []string{name + "#", name + "/"} {
		q := RowQuery{Prefix: prefix}
		for {
			page, err := rows.List(ctx, RuntimeNamespace, table, q)
			if err != nil {
				return err
			}
			for _, r := range page {
				slash := strings.LastIndexByte(r.Key, '/')
				if slash < 0 {
					continue
				}
				if cp := r.Key[:slash]; cp != name {
					if base, _, _, ok := ParsePartitionName(cp); !ok || base != name {
						continue
					}
				}
				if !fn(r) {
					return nil
				}
			}
			if len(page) < DefaultRowLimit {
				break
			}
			q.After = page[len(page)-1].Key
		}
	}
	return nil
}

// maxReason bounds the failure reason a halt, dead letter or replay
// request keeps: stored as it came (NUL, megabytes), such a text made the
// record fail, and the event was retried for ever instead of given up on.
const maxReason = 4 << 10

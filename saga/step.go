package saga

import (
	"context"
	"fmt"
	"time"

	"github.com/converge-es/converge/events"
)

// Step is what a handler works with while it handles one message for one
// instance. Everything it does (state changes, commands, timers,
// compensations, completion) takes effect when the handler returns nil,
// in the same unit of work as the record that the message was handled;
// an error discards all of it, and what the handler wrote itself
// through Context's unit (events.Update, the unit's rows or transaction):
// a unit cannot undo part of itself, so a handler that fails after such a
// write has its whole unit rolled back (the delivery fails with
// ErrStepWroteAndFailed, behind the head of a unit by a feed.ErrCut), and
// when the message comes again the step is retried like any failed step
// without its handler running twice for one attempt. The same goes for a
// step the engine refuses after such a write (a command nobody handles,
// state the store would refuse): the writes go with the unit, and the
// instance fails when the message comes again.
//
// A Step is valid only while its handler runs.
type Step[S any] struct {
	core  *stepCore
	state *S
}

// stepCore is the state-type-free part of a step.
type stepCore struct {
	ctx      context.Context
	reg      *events.Registry
	saga     string
	id       string
	env      events.Envelope
	token    events.Token
	now      time.Time
	state    any // *S
	inst     *instance
	commands []commandRecord
	// timerOps are schedules and cancels, in order.
	timerOps       []timerOp
	compensations  []commandRecord
	compensate     bool
	compensateUpTo int // compensations of this step registered before RunCompensations
	complete       bool
	fail           string
	notes          []string
}

type timerOp struct {
	name string
	due  time.Time
	// cancel marks a cancel: a zero due is a schedule for the zero time
	// (long past, so due at once), not a cancel.
	cancel bool
}

// State returns the instance's state, to read and change in place.
func (s *Step[S]) State() *S { return s.state }

// ID returns the instance id.
func (s *Step[S]) ID() string { return s.core.id }

// Event returns the message being handled as stored (for a timeout, the
// timer-fired event).
func (s *Step[S]) Event() events.Envelope { return s.core.env }

// Context returns the handler's context: it carries the step's unit of
// work, and deadlines and values of the delivery. Read read models with it
// (projections.Get on a View, or the unit's Rows); the engine has already
// waited for the models named in Reads to reach Token. Both read through
// the step's unit, on the connection it holds; a read through the store
// (Store.Rows) takes a second connection while the step holds one, which
// on a pool no larger than the partitions can deadlock. Writes through
// the unit are part of the step: they land only if it succeeds.
func (s *Step[S]) Context() context.Context { return s.core.ctx }

// Token returns the causal token the step runs at: the later of the
// message's token and the highest token the instance has seen or
// produced. Read models named in Reads reflect at least this token.
func (s *Step[S]) Token() events.Token { return s.core.token }

// Now returns the engine clock's time when the step began.
func (s *Step[S]) Now() time.Time { return s.core.now }

// Send sends a command: a value of a type registered in the store's
// events.Registry. It is appended, when the step commits, to the
// command's stream (command.StreamFor) with an id derived from the
// instance, the step and its position among the step's commands, so a
// retried step sends the same ids, and with the instance id as correlation
// id, the message's id as causation id, and the causal token in metadata.
// Send fails only for a value that cannot be encoded.
func (s *Step[S]) Send(cmd any) error {
	rec, err := s.core.encode(cmd)
	if err != nil {
		return fmt.Errorf("saga %q: Send: %w", s.core.saga, err)
	}
	s.core.commands = append(s.core.commands, rec)
	return nil
}

// Schedule sets the timer called name to fire after d (from Now), replacing
// an earlier schedule of the same name: the earlier one will not act even
// if it has already fired. The OnTimeout handler for name runs when it
// fires. A name that is empty, longer than MaxTimerNameLength bytes or not
// valid text fails the step permanently (Permanent), with nothing of it
// committed; so does a timer whose TimerFired event the store would
// refuse when it is due (an instance id and name over the store's
// payload limit), as a command over it given to Send does.
func (s *Step[S]) Schedule(name string, after time.Duration) {
	s.ScheduleAt(name, s.core.now.Add(after))
}

// ScheduleAt is Schedule at an absolute time. A time already past (the
// zero time too) fires at the next pass of the timer loop (one before the
// zero time is kept as the zero time); a time past the year 2262 waits as
// if for then (one past the year 9999, such as the "never" idiom
// time.Unix(1<<62, 0), is kept as the end of 9999).
func (s *Step[S]) ScheduleAt(name string, at time.Time) {
	s.core.timerOps = append(s.core.timerOps, timerOp{name: name, due: clampDue(at)})
}

// Bounds of a timer's due time: JSON writes years 0 to 9999 only, so a
// far-future "never" such as time.Unix(1<<62, 0) would fail the unit.
var (
	earliestDue = time.Time{}
	latestDue   = time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC)
)

func clampDue(at time.Time) time.Time {
	switch {
	case at.Before(earliestDue):
		return earliestDue
	case at.After(latestDue):
		return latestDue
	}
	return at
}

// Cancel cancels the timer called name. Cancelling a timer that is not
// scheduled, or has fired already, does nothing: Cancel never fails a
// step.
func (s *Step[S]) Cancel(name string) {
	s.core.timerOps = append(s.core.timerOps, timerOp{name: name, cancel: true})
}

// Compensate registers cmd as the compensation of what the step did. When a
// later step calls RunCompensations, the compensations registered so far
// are sent in reverse order of registration. Fails only for a value that
// cannot be encoded. A compensation the store would refuse to append
// when it is sent (over its payload limit, say) fails the step that
// registers it permanently, as such a command given to Send does: the
// step that would run it later, a decline or an operator's cancel, could
// not be taken. For the same reason, when EngineConfig.Commands is set, a
// compensation of a type no command handler handles fails the step that
// registers it with ErrNoCommandHandler, as Send of such a command does.
func (s *Step[S]) Compensate(cmd any) error {
	rec, err := s.core.encode(cmd)
	if err != nil {
		return fmt.Errorf("saga %q: Compensate: %w", s.core.saga, err)
	}
	s.core.compensations = append(s.core.compensations, rec)
	return nil
}

// RunCompensations sends every registered compensation, newest first, and
// moves the instance to StatusCompensating. Compensations registered after
// it in the same step are not sent. Running them twice sends nothing more.
func (s *Step[S]) RunCompensations() {
	if !s.core.compensate {
		s.core.compensate = true
		s.core.compensateUpTo = len(s.core.compensations)
	}
}

// Compensating reports whether the instance has run its compensations.
func (s *Step[S]) Compensating() bool { return s.core.inst.Compensated || s.core.compensate }

// Complete ends the instance successfully once the step commits. Its
// pending timers are cancelled; later messages for it are ignored.
func (s *Step[S]) Complete() { s.core.complete = true }

// Fail ends the instance as failed with reason, a decision of the process
// (say, the payment was declined and compensated). Unlike a Permanent
// error, the step's effects are kept and there is nothing to retry.
func (s *Step[S]) Fail(reason string) {
	if reason == "" {
		reason = "failed by the saga"
	}
	s.core.fail = reason
}

// Note adds a line to the instance's history, for operators.
func (s *Step[S]) Note(text string) { s.core.notes = append(s.core.notes, text) }

func (c *stepCore) encode(v any) (commandRecord, error) {
	raw, err := c.reg.Encode(v)
	if err != nil {
		return commandRecord{}, err
	}
	return commandRecord{Type: raw.Type, SchemaVersion: raw.SchemaVersion, Payload: storedJSON(raw.Payload)}, nil
}

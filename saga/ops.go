package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// Filter selects instances for Engine.List. The zero Filter lists all.
type Filter struct {
	// Saga keeps instances of this saga type. Defaults to "" (every type).
	Saga string
	// Status keeps instances with this status. Defaults to "" (every one).
	Status Status
	// StuckLongerThan keeps instances whose step has been parked longer
	// than this. Defaults to 0 (no such condition).
	StuckLongerThan time.Duration
	// Limit caps the result. Defaults to 1000.
	Limit int
	// After continues a listing after the instance this cursor names: the
	// Cursor of the last Info of the page before. Defaults to "" (from the
	// first instance).
	After string
}

// Cursor names the instance's place in List's order: pass it as
// Filter.After to list the instances after it.
func (in Info) Cursor() string { return instanceKey(in.Saga, in.ID) }

// Info describes an instance.
type Info struct {
	Saga    string       `json:"saga"`
	ID      string       `json:"id"`
	Status  Status       `json:"status"`
	Reason  string       `json:"reason,omitempty"`
	Version int64        `json:"version"`
	Steps   int64        `json:"steps"`
	Token   events.Token `json:"token"`
	// State is the instance's state as stored: the JSON the last step
	// encoded it to, the same bytes on every store (an instance no step
	// has run since an earlier release stored it on PostgreSQL shows it as
	// jsonb gave it back, compacted).
	State        json.RawMessage `json:"state,omitempty"`
	StateVersion int             `json:"state_version"`
	// ParkedSince, Waiting and Stuck describe a parked step. Waiting are
	// the read models the step reads: it runs once all of them reached
	// its token (its "parked" history entry names those that were behind
	// when it parked).
	ParkedSince time.Time `json:"parked_since,omitzero"`
	Waiting     []string  `json:"waiting,omitempty"`
	// WaitToken is the token every model in Waiting must reach before the
	// step runs: the later of its event's and the instance's causal token.
	WaitToken events.Token `json:"wait_token,omitzero"`
	// ParkedType and ParkedEvent name the event the parked step handles.
	ParkedType  string `json:"parked_type,omitempty"`
	ParkedEvent string `json:"parked_event,omitempty"`
	// RetryAt is when a step that failed runs again (it is parked until
	// then); Attempts counts its failed runs and LastError is the newest
	// failure's text.
	RetryAt   time.Time `json:"retry_at,omitzero"`
	Attempts  int       `json:"attempts,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	Stuck     bool      `json:"stuck,omitempty"`
	Queued    int64     `json:"queued,omitempty"`
	// Timers are the active timers by name, with their due times.
	Timers  map[string]time.Time `json:"timers,omitempty"`
	Created time.Time            `json:"created"`
	Updated time.Time            `json:"updated"`
	// Ended is when the instance ended (zero while it runs).
	Ended time.Time `json:"ended,omitzero"`
	// Purged is when retention deleted the instance's history up to then,
	// its dedupe records and its state (EngineConfig.Retention); the
	// instance row stays so late messages are still recognised.
	Purged time.Time `json:"purged,omitzero"`
}

func (in *instance) info() Info {
	i := Info{
		Saga: in.Saga, ID: in.ID, Status: in.Status, Reason: in.Reason, Version: in.Version, Steps: in.Seq,
		Token: in.Token, State: in.State.document(), StateVersion: in.StateVersion, Queued: in.MailboxTail - in.MailboxHead,
		Created: in.Created, Updated: in.Updated, Ended: in.Ended, Purged: in.Purged,
	}
	if !in.Purged.IsZero() {
		i.State = nil // stored as null: the tombstone has none
	}
	if p := in.Parked; p != nil {
		i.ParkedSince, i.Waiting, i.RetryAt, i.Stuck = p.Since, p.Models, p.RetryAt, p.Stuck
		i.ParkedType, i.ParkedEvent, i.Attempts, i.LastError = p.Env.Type, p.Env.ID, p.Attempts, p.LastError
		if len(p.Models) > 0 {
			i.WaitToken = p.Token
		}
	}
	for name, t := range in.Timers {
		if t.Active {
			if i.Timers == nil {
				i.Timers = map[string]time.Time{}
			}
			i.Timers[name] = t.Due
		}
	}
	return i
}

// List returns the instances that pass f in the order of their row keys:
// the saga's name, "/", then the id URL-path-escaped, compared byte by
// byte. The order is stable, so pages (Filter.After, from the last
// Info's Cursor) neither overlap nor skip an instance that existed
// throughout, but it is not alphabetical by type and id where a name
// holds a byte below "/" (such as "-" or ".") or an id needs escaping.
func (e *Engine) List(ctx context.Context, f Filter) ([]Info, error) {
	return listInstances(ctx, e.cfg.Store.Rows(), e.cfg.Clock.Now(), f)
}

// Timeline is an instance and its history, oldest first.
type Timeline struct {
	Info    Info           `json:"info"`
	History []HistoryEntry `json:"history"`
	// Ignored are messages that correlated to this id while no instance
	// had it (saga.On handlers never start one). Retention deletes them
	// once EngineConfig.Retention has passed, or with the instance's
	// history when one has started since.
	Ignored []IgnoredMessage `json:"ignored,omitempty"`
	// Request is an operator's retry or cancel waiting for an engine that
	// runs the saga type (Operator.RequestRetry, RequestCancel).
	Request *Request `json:"request,omitempty"`
}

// Show returns an instance's timeline: messages received, waits and
// parks, commands sent, timers, compensations and errors. ErrNotFound when
// there is no instance with the id (Timeline.Ignored still lists messages
// that were ignored for it).
func (e *Engine) Show(ctx context.Context, saga, id string) (Timeline, error) {
	return showInstance(ctx, e.cfg.Store.Rows(), saga, id)
}

// Retry runs a failed instance's failed step again (with a fresh count of
// attempts), then its queued messages; for a stuck instance it restarts the
// stuck clock (the step still runs only once its read models catch up).
// ErrNotRetryable for any other instance. ErrUnknownSaga for a saga type
// this engine does not run, which it could not run the step of
// (Operator.RequestRetry leaves the retry to an engine that runs it).
func (e *Engine) Retry(ctx context.Context, saga, id string) error {
	if err := addressable(saga, id); err != nil {
		return err
	}
	err := e.withUnit(ctx, func(ctx context.Context, u feed.Unit) error {
		return e.retryIn(ctx, u, saga, id, "retried by an operator")
	})
	if err == nil {
		e.parkWake.Notify()
	}
	return err
}

func (e *Engine) retryIn(ctx context.Context, u feed.Unit, saga, id, detail string) error {
	if _, ok := e.sagas[saga]; !ok {
		// Parked for a retry here, the step would wait for another
		// engine's sweep, or for ever once the type is removed, with the
		// instance no longer listed as failed.
		return unknownSaga("retry", saga, id)
	}
	rows := u.Rows()
	in, found, err := e.load(ctx, rows, saga, id, feed.LockUpdate)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w: %s/%s", ErrNotFound, saga, id)
	}
	now := e.cfg.Clock.Now().UTC()
	switch {
	case in.Status == StatusFailed && in.Failed != nil:
		env := *in.Failed
		in.Failed, in.Reason = nil, ""
		in.Status = StatusParked
		in.Parked = &parked{Env: env, Since: now, RetryAt: now, Resume: StatusRunning}
		if in.Compensated {
			in.Parked.Resume = StatusCompensating
		}
	case in.Parked != nil && in.Parked.Stuck:
		in.Parked.Stuck, in.Parked.Since = false, now
	default:
		return notRetryable(in)
	}
	if err := e.record(ctx, rows, in, HistoryEntry{Kind: KindRetried, Detail: detail}); err != nil {
		return err
	}
	if err := e.syncParkIndex(ctx, rows, in); err != nil {
		return err
	}
	return e.save(ctx, rows, in)
}

// Cancel ends a running, parked, compensating or failed instance: its
// timers are cancelled, its parked step and queued messages are dropped
// (recorded in its history), and later messages for it are ignored.
// The saga's OnCancel handler, when it has one, runs first as a step in
// the same unit (its commands, RunCompensations, notes commit with the
// cancel; a handler that fails refuses the cancel). Without one, nothing
// is sent and what the instance's commands did stays. ErrEnded for an
// instance that has already ended. ErrUnknownSaga, with nothing changed,
// for a saga type this engine does not run: it cannot know whether the
// type has an OnCancel handler, let alone run it, so the cancel is for an
// engine that runs the type (Operator.RequestCancel leaves it to one).
//
// The handler needs the instance's state: a cancel of an instance whose
// state a newer build stored (see Config.StateVersion) is refused, to be
// made where that build runs. After a rollback, when it runs nowhere,
// CancelWith with CancelOptions.SkipOnCancel ends the instance without
// the handler. Cancel is CancelWith with only the reason.
func (e *Engine) Cancel(ctx context.Context, saga, id, reason string) error {
	return e.CancelWith(ctx, saga, id, CancelOptions{Reason: reason})
}

// CancelOptions is how Engine.CancelWith and Operator.RequestCancelWith
// cancel an instance. The zero value cancels as Engine.Cancel does.
type CancelOptions struct {
	// Reason is recorded on the instance and handed to its OnCancel
	// handler. Defaults to "cancelled by an operator".
	Reason string
	// SkipOnCancel ends the instance without running the saga's OnCancel
	// handler: nothing it would send or compensate is, and the instance's
	// history says the handler did not run. It is the way to end an
	// instance whose state only a build that no longer runs can read (a
	// newer build, after a rollback): without it, a cancel of a type with
	// an OnCancel handler needs the state, so Engine.CancelWith refuses it
	// and an Operator's request waits for an engine of a build that reads
	// it. Defaults to false (the handler runs). Engines of releases before
	// the option read a request with it as one without.
	SkipOnCancel bool
}

// CancelWith cancels as Cancel does, as opts say: with
// CancelOptions.SkipOnCancel the saga's OnCancel handler does not run,
// so an instance whose state this build cannot read ends all the same.
func (e *Engine) CancelWith(ctx context.Context, saga, id string, opts CancelOptions) error {
	if err := addressable(saga, id); err != nil {
		return err
	}
	err := e.withUnit(ctx, func(ctx context.Context, u feed.Unit) error {
		return e.cancelIn(ctx, u, saga, id, opts)
	})
	if err == nil {
		// A pass now, as after Retry: the stuck gauge, set by passes, must
		// not count the cancelled step until the next sweep.
		e.parkWake.Notify()
	}
	return err
}

// errSkippedByOperator is why a cancel with CancelOptions.SkipOnCancel did
// not run the OnCancel handler, as its history says.
var errSkippedByOperator = errors.New("the operator cancelled without it (SkipOnCancel)")

func (e *Engine) cancelIn(ctx context.Context, u feed.Unit, saga, id string, opts CancelOptions) error {
	s, ok := e.sagas[saga]
	if !ok {
		return unknownSaga("cancel", saga, id)
	}
	rows := u.Rows()
	in, found, err := e.load(ctx, rows, saga, id, feed.LockUpdate)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w: %s/%s", ErrNotFound, saga, id)
	}
	if in.ended() {
		return fmt.Errorf("%w: %s/%s is %s", ErrEnded, saga, id, in.Status)
	}
	reason := opts.Reason
	if reason == "" {
		reason = "cancelled by an operator"
	}
	note := ""
	if s.cancel != nil {
		skipped := errSkippedByOperator
		if !opts.SkipOnCancel {
			if skipped, err = e.runCancelHandler(ctx, u, s, in, reason); err != nil {
				return err
			}
		}
		if skipped != nil {
			note = fmt.Sprintf("; its OnCancel handler did not run: %v", skipped)
		}
	}
	dropped, err := e.dropQueued(ctx, rows, in)
	if err != nil {
		return err
	}
	if in.Parked != nil {
		dropped++
	}
	if dropped > 0 {
		u.AfterCommit(func() { e.metrics.Ignored.WithLabelValues(saga, "ended").Add(float64(dropped)) })
	}
	in.Parked, in.Failed = nil, nil
	if err := e.cancelAllTimers(ctx, rows, in); err != nil {
		return err
	}
	in.Status, in.Reason = StatusCancelled, storable(reason)
	if err := e.record(ctx, rows, in, HistoryEntry{Kind: KindCancelled, Detail: fmt.Sprintf("%s (%d pending messages dropped%s)", reason, dropped, note)}); err != nil {
		return err
	}
	if err := e.syncParkIndex(ctx, rows, in); err != nil {
		return err
	}
	return e.save(ctx, rows, in)
}

// dropQueued deletes the instance's queued messages and says how many
// there were: an instance that ended takes no more.
func (e *Engine) dropQueued(ctx context.Context, rows feed.Rows, in *instance) (int64, error) {
	n := in.MailboxTail - in.MailboxHead
	for seq := in.MailboxHead; seq < in.MailboxTail; seq++ {
		if err := rows.Delete(ctx, rowNamespace, tableMailbox, childKey(in.Saga, in.ID, seqKey(seq))); err != nil {
			return 0, wrapRows(err, "drop queued message", in.Saga, in.ID)
		}
	}
	in.MailboxHead = in.MailboxTail
	return n, nil
}

// CancelStepType is the event type an OnCancel handler's step is recorded
// under in the instance's history.
const CancelStepType = "converge.saga.cancel"

// errNewerBuild refuses a cancel this build cannot carry out: the
// instance's state is of a newer build, whose OnCancel handler must run it.
// An operator's request waits for that build instead of being refused;
// CancelOptions.SkipOnCancel ends the instance without the handler.
var errNewerBuild = errors.New("saga: the instance's state is of a newer build")

// runCancelHandler runs the saga's OnCancel handler as a step of its own in
// the cancel's unit, before the instance ends. A handler that fails, or a
// step the store would refuse, refuses the cancel: nothing of it is kept.
// State stored by a newer build refuses it too (errNewerBuild), naming
// CancelOptions.SkipOnCancel for when that build runs nowhere. State that
// does not decode otherwise cannot be handed to the handler, and would
// make the instance impossible to end: the cancel goes on without the
// handler, and skipped says why. A step that sends a command the catalog
// (EngineConfig.Commands) says nobody handles refuses the cancel with an
// error wrapping ErrNoCommandHandler: a command the handler sends, or a
// compensation whose handler was removed after the step that registered it
// (which checks it) committed.
func (e *Engine) runCancelHandler(ctx context.Context, u feed.Unit, s *compiled, in *instance, reason string) (skipped, err error) {
	state, err := s.state(in)
	if err != nil {
		if in.StateVersion > s.cfg.stateVersion {
			return nil, fmt.Errorf("%w: %w: %s/%s is at state v%d, this build knows v%d, so its OnCancel handler cannot run here: cancel it where the newer build runs, or, if that build runs nowhere (a rollback), cancel it without the handler (CancelOptions.SkipOnCancel; `converge sagas cancel --skip-on-cancel`)", errRefused, errNewerBuild, s.name, in.ID, in.StateVersion, s.cfg.stateVersion)
		}
		return err, nil
	}
	env := events.Envelope{
		ID:       uuid.NewSHA1(commandNamespace, fmt.Appendf(nil, "cancel\x00%s\x00%s\x00%d", s.name, in.ID, in.Seq)).String(),
		Type:     CancelStepType,
		Token:    in.Token,
		Metadata: events.Metadata{CorrelationID: in.ID},
	}
	core := &stepCore{
		ctx: ctx, reg: e.reg, saga: s.name, id: in.ID, env: env, token: in.Token,
		now: e.cfg.Clock.Now().UTC(), state: state, inst: in,
	}
	if err := runHandler(s.cancel, core, Cancelled{Reason: reason}); err != nil {
		return nil, fmt.Errorf("%w: %s/%s: its OnCancel handler failed, so nothing was cancelled: %w", errRefused, s.name, in.ID, err)
	}
	if core.complete || core.fail != "" {
		// The cancel decides how the instance ends: a completion or failure
		// recorded (and counted) here would tell another story.
		core.complete, core.fail = false, ""
		core.notes = append(core.notes, "the OnCancel handler's Complete or Fail was ignored: the instance ends cancelled")
	}
	err = e.commitStep(ctx, u, s, in, core, env, HistoryEntry{})
	var perm *PermanentError
	if errors.Is(err, ErrNoCommandHandler) {
		// A command the OnCancel handler sends, or a compensation whose
		// handler was removed after it was registered: the handler must be
		// deployed for the cancel to undo what the instance did.
		return nil, fmt.Errorf("%w: %s/%s: its OnCancel step sends a command no command handler handles, so nothing was cancelled (deploy its handler, then cancel again): %w", errRefused, s.name, in.ID, err)
	}
	if errors.As(err, &perm) {
		return nil, fmt.Errorf("%w: %s/%s: its OnCancel step cannot be stored, so nothing was cancelled: %w", errRefused, s.name, in.ID, err)
	}
	return nil, err
}

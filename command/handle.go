package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/google/uuid"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// resultNamespace seeds the ids of the events a command produces. Changing
// it would break the deduplication of redelivered commands.
var resultNamespace = uuid.MustParse("5b0f8a3e-2c71-4e49-8f6d-1a9c3e7d2b40")

// Row layout of command results in feed.Rows.
const (
	rowNamespace = "converge.command"
	tableResults = "results"
)

// Result is what handling a command did, kept per command id so a
// redelivered command reports it instead of acting again.
type Result struct {
	CommandID string       `json:"command_id"`
	StreamID  string       `json:"stream_id,omitempty"`
	EventIDs  []string     `json:"event_ids,omitempty"`
	Token     events.Token `json:"token,omitzero"`
	Rejected  string       `json:"rejected,omitempty"`
}

// Decide turns a command and the aggregate's current state into events
// (values of registered types), or refuses it with Reject. It may run
// several times (on a version conflict) and must have no side effects.
type Decide[C, S any] func(ctx context.Context, state S, cmd C) ([]any, error)

// Handle returns a command handler that loads the aggregate of stream(cmd)
// through the delivery's unit of work, decides, and appends the events
// with the expected version, retrying on a conflict. The events get ids
// derived from the command id, the command's correlation id and the
// command id as causation id. A command seen before (same id) appends
// nothing and reports its first result; a rejected one appends a Rejected
// event, and so does one whose decided events the store refuses
// (events.ErrInvalidEvent: over the payload limit, say), since deciding
// again would give the same. Other errors are returned, so the delivery is
// retried.
func Handle[C, S any](name string, store events.Store, agg events.Aggregate[S], stream func(C) string, decide Decide[C, S]) cqrs.CommandHandler {
	return cqrs.NewCommandHandler(name, func(ctx context.Context, cmd *C) error {
		_, err := Run(ctx, store, agg, stream(*cmd), *cmd, decide)
		return err
	})
}

// Run is Handle's work for one delivered command, for handlers that need
// more than Handle gives: it returns the command's Result. ctx must be a
// delivery's context (it carries the message and its unit).
func Run[C, S any](ctx context.Context, store events.Store, agg events.Aggregate[S], streamID string, cmd C, decide Decide[C, S]) (Result, error) {
	msg := cqrs.OriginalMessageFromCtx(ctx)
	if msg == nil {
		return Result{}, errors.New("command: Run needs the context of a delivered command (run it from a command handler)")
	}
	env, err := feed.EnvelopeFromMessage(msg)
	if err != nil {
		return Result{}, err
	}
	eu, ok := events.UnitFromContext(ctx)
	u, isFeed := eu.(feed.Unit)
	if !ok || !isFeed {
		return Result{}, errors.New("command: the delivery carries no unit of work (subscribe with feed.Subscriber or run on feed.Processor)")
	}
	rows := u.Rows()
	if err := prefetchResults(ctx, rows); err != nil {
		return Result{}, err
	}
	if row, ok, err := rows.Get(ctx, rowNamespace, tableResults, env.ID, feed.LockUpdate); err != nil {
		return Result{}, fmt.Errorf("command: read result of %s: %w", env.ID, err)
	} else if ok {
		var r Result
		if err := json.Unmarshal(row.Value, &r); err != nil {
			return Result{}, fmt.Errorf("command: result of %s does not decode: %w", env.ID, err)
		}
		return r, nil
	}
	md := events.Metadata{CorrelationID: env.Metadata.CorrelationID, CausationID: env.ID}
	if tok := env.Metadata.Extra[MetaCausalToken]; tok != "" {
		md.Extra = map[string]string{MetaCausalToken: tok}
	}
	res := Result{CommandID: env.ID, StreamID: streamID}
	var rejected *RejectedError
	ar, err := events.Update(ctx, store, agg, streamID, &events.UpdateConfig{MaxAttempts: 5}, func(state S) ([]events.Event, error) {
		out, err := decide(ctx, state, cmd)
		if err != nil {
			return nil, err
		}
		evs := make([]events.Event, len(out))
		for i, data := range out {
			evs[i] = events.Event{ID: eventID(env.ID, i), Data: data, Metadata: md}
		}
		return evs, nil
	})
	if err != nil && !errors.As(err, &rejected) && errors.Is(err, events.ErrInvalidEvent) {
		// The store refuses what was decided (an event over its payload
		// limit, a NUL in a string, an invalid stream id), before writing
		// anything. Deciding again on the same state gives the same, so
		// a retry can never succeed: the sender hears of it as a
		// rejection, instead of the handler's consumer retrying it for
		// ever behind the commands that follow.
		err = &RejectedError{Reason: "the store refuses the decision: " + err.Error()}
	}
	switch {
	case errors.As(err, &rejected):
		res.Rejected = rejected.Reason
		ar, err = u.Append(ctx, StreamFor(RejectedType, md.CorrelationID), events.AnyVersion, events.Event{
			ID: eventID(env.ID, -1), Data: Rejected{CommandID: env.ID, Type: env.Type, Reason: rejected.Reason}, Metadata: md,
		})
		if err != nil {
			return Result{}, fmt.Errorf("command: record rejection of %s: %w", env.ID, err)
		}
	case err != nil:
		return Result{}, fmt.Errorf("command: %s %s: %w", env.Type, env.ID, err)
	}
	res.EventIDs, res.Token = ar.EventIDs, ar.Token
	b, err := json.Marshal(res)
	if err != nil {
		return Result{}, err
	}
	if err := rows.Put(ctx, rowNamespace, tableResults, env.ID, b, env.Token); err != nil {
		return Result{}, fmt.Errorf("command: store result of %s: %w", env.ID, err)
	}
	return res, nil
}

// prefetchResults, at the head of a unit of several commands, reads the
// result rows of all of them in one statement, locked as each command's
// own read would lock its row, so each command's look-up costs no round
// trip of its own.
func prefetchResults(ctx context.Context, rows feed.Rows) error {
	evs := feed.UnitEvents(ctx)
	if len(evs) < 2 || feed.UnitIndex(ctx) != 0 {
		return nil
	}
	addrs := make([]feed.RowAddress, len(evs))
	for i, env := range evs {
		addrs[i] = feed.RowAddress{Namespace: rowNamespace, Table: tableResults, Key: env.ID}
	}
	if err := rows.Prefetch(ctx, feed.LockUpdate, addrs...); err != nil {
		return fmt.Errorf("command: read the results of a unit's %d commands: %w", len(evs), err)
	}
	return nil
}

func eventID(commandID string, i int) string {
	return uuid.NewSHA1(resultNamespace, fmt.Appendf(nil, "%s\x00%d", commandID, i)).String()
}

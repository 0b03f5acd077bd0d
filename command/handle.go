package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/google/uuid"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/rowjson"
)

// resultNamespace seeds the ids of the events a command produces. Changing
// it would break the deduplication of redelivered commands.
var resultNamespace = uuid.MustParse("5b0f8a3e-2c71-4e49-8f6d-1a9c3e7d2b40")

// Row layout of command results in feed.Rows. A claim row lives only
// while a unit handles its command (see claim): the unit writes it and
// deletes it again, so it is never committed.
const (
	rowNamespace = "converge.command"
	tableResults = "results"
	tableClaims  = "claims"
)

// Result is what handling a command did, kept per command id so a
// redelivered command reports it instead of acting again. Rejected is set
// exactly when the command was rejected, to the reason as stored (see
// Rejected.Reason); StreamID is kept as free text is, as the stream id of
// a rejected command may be one the store refused.
type Result struct {
	CommandID string       `json:"command_id"`
	StreamID  string       `json:"stream_id,omitempty"`
	EventIDs  []string     `json:"event_ids,omitempty"`
	Token     events.Token `json:"token,omitzero"`
	Rejected  string       `json:"rejected,omitempty"`
}

// storedResult is a Result as its row holds it. A row holds at most
// events.DefaultMaxPayloadBytes whatever the store's Limits, and a
// decision of tens of thousands of events (MaxEventsPerAppend raised)
// would not fit with every id written out; as the ids derive from the
// command id and the event's place (eventID), the row keeps how many
// there were instead. Rows written before keep the ids in EventIDs.
type storedResult struct {
	CommandID string       `json:"command_id"`
	StreamID  string       `json:"stream_id,omitempty"`
	EventIDs  []string     `json:"event_ids,omitempty"`
	Events    int          `json:"events,omitempty"`
	Token     events.Token `json:"token,omitzero"`
	Rejected  string       `json:"rejected,omitempty"`
}

// maxText bounds the free text of a command's rejection and result (the
// reason, a stream id the store refused), as the saga engine and the feed
// bound theirs: a decision's reason, or the store's, which quotes an
// invalid stream id whole, can be as long as a command's payload and hold
// a NUL, and a Rejected event or result row the store refuses would fail
// the delivery for ever, with every later command of the handler behind
// it.
const maxText = 4 << 10

// storable is free text as a Rejected event and a result row hold it, so
// that what the first delivery reports is what a redelivery reads back.
func storable(s string) string {
	return rowjson.Text(strings.ToValidUTF8(s, "\uFFFD"), maxText)
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
	d, err := deliveryFrom(ctx, "Run", events.LimitsOf(store))
	if err != nil {
		return Result{}, err
	}
	if res, ok, err := d.earlier(ctx); err != nil || ok {
		return res, err
	}
	res := Result{CommandID: d.env.ID, StreamID: storable(streamID)}
	var rejected *RejectedError
	// decideFailed tells decide's own errors, which Update returns at once
	// and unchanged, from the store's. A flag, not a comparison of the
	// errors: an error of a slice or map type (a validator's list of field
	// errors) cannot be compared, and == on it panics.
	decideFailed := false
	ar, err := events.Update(ctx, store, agg, streamID, &events.UpdateConfig{MaxAttempts: updateAttempts}, func(state S) ([]events.Event, error) {
		out, err := decide(ctx, state, cmd)
		if err != nil {
			decideFailed = true
			return nil, err
		}
		evs := make([]events.Event, len(out))
		for i, data := range out {
			evs[i] = events.Event{ID: eventID(d.env.ID, i), Data: data, Metadata: d.md}
		}
		return evs, nil
	})
	if err != nil && !decideFailed && errors.Is(err, events.ErrWrongExpectedVersion) {
		err = persistentConflict(streamID, err)
	}
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
		return d.reject(ctx, streamID, rejected.Reason)
	case err != nil:
		return Result{}, fmt.Errorf("command: %s %s: %w", d.env.Type, d.env.ID, err)
	}
	res.EventIDs, res.Token = ar.EventIDs, ar.Token
	return res, d.keep(ctx, res)
}

// rejectUndecodable rejects a delivered command that does not decode
// (cause says why) as a decision's Reject would, on a store of limits
// lim: without the command there is nothing to decide on, and a retry
// would decode it no better. fresh is false when an earlier delivery
// rejected it already.
func rejectUndecodable(ctx context.Context, lim events.Limits, cause error) (res Result, fresh bool, err error) {
	d, err := deliveryFrom(ctx, "the Processor", lim)
	if err != nil {
		return Result{}, false, err
	}
	if res, ok, err := d.earlier(ctx); err != nil || ok {
		return res, false, err
	}
	res, err = d.reject(ctx, "", "the command does not decode: "+cause.Error())
	return res, err == nil, err
}

// delivery is one delivered command and the unit of work it is handled
// in.
type delivery struct {
	env  events.Envelope
	unit feed.Unit
	rows feed.Rows
	// md is the metadata of the events the command produces: its
	// correlation, the command as their cause, and its causal token.
	md events.Metadata
	// limits are the store's, which a Rejected event must fit.
	limits events.Limits
}

// deliveryFrom reads the delivery ctx carries, for caller (named in the
// error when there is none), on a store of limits lim, and claims the
// command for the delivery's unit (see claim), which reads its earlier
// result: at the head of a unit, of all the unit's commands at once.
func deliveryFrom(ctx context.Context, caller string, lim events.Limits) (delivery, error) {
	msg := cqrs.OriginalMessageFromCtx(ctx)
	if msg == nil {
		return delivery{}, fmt.Errorf("command: %s needs the context of a delivered command (run it from a command handler)", caller)
	}
	env, err := feed.EnvelopeFromMessage(msg)
	if err != nil {
		return delivery{}, err
	}
	eu, ok := events.UnitFromContext(ctx)
	u, isFeed := eu.(feed.Unit)
	if !ok || !isFeed {
		return delivery{}, errors.New("command: the delivery carries no unit of work (subscribe with feed.Subscriber or run on feed.Processor)")
	}
	d := delivery{env: env, unit: u, rows: u.Rows(), md: events.Metadata{CorrelationID: env.Metadata.CorrelationID, CausationID: env.ID}, limits: lim}
	if tok := env.Metadata.Extra[MetaCausalToken]; tok != "" {
		d.md.Extra = map[string]string{MetaCausalToken: tok}
	}
	if err := claim(ctx, u, d.rows, env); err != nil {
		return delivery{}, err
	}
	return d, nil
}

// earlier returns the result of an earlier delivery of the command, and
// false when there was none.
func (d delivery) earlier(ctx context.Context) (Result, bool, error) {
	row, ok, err := d.rows.Get(ctx, rowNamespace, tableResults, d.env.ID, feed.LockUpdate)
	if err != nil {
		return Result{}, false, fmt.Errorf("command: read result of %s: %w", d.env.ID, err)
	}
	if !ok {
		return Result{}, false, nil
	}
	var sr storedResult
	if err := json.Unmarshal(row.Value, &sr); err != nil {
		return Result{}, false, fmt.Errorf("command: result of %s does not decode: %w", d.env.ID, err)
	}
	res := Result{CommandID: d.env.ID, StreamID: sr.StreamID, EventIDs: sr.EventIDs, Token: sr.Token, Rejected: sr.Rejected}
	switch {
	case sr.Events > 0 && sr.Rejected != "":
		res.EventIDs = []string{eventID(d.env.ID, -1)}
	case sr.Events > 0:
		res.EventIDs = make([]string, sr.Events)
		for i := range res.EventIDs {
			res.EventIDs[i] = eventID(d.env.ID, i)
		}
	}
	return res, true, nil
}

// reject appends the command's Rejected event, on the sender's
// correlation, and keeps the result. The reason is stored as storable
// text, cut further where the event would not fit the store's payload
// limit (see fitRejection), and the result holds it as stored, so a
// redelivery reports the same.
func (d delivery) reject(ctx context.Context, streamID, reason string) (Result, error) {
	if reason == "" {
		// An empty Result.Rejected means the command was not rejected.
		reason = "no reason given"
	}
	ev, err := fitRejection(Rejected{CommandID: d.env.ID, Type: d.env.Type}, reason, d.limits.WithDefaults().MaxPayloadBytes)
	if err != nil {
		return Result{}, fmt.Errorf("command: record rejection of %s: %w", d.env.ID, err)
	}
	res := Result{CommandID: d.env.ID, StreamID: storable(streamID), Rejected: ev.Reason}
	md := d.md
	if sender := d.env.Metadata.Extra[MetaSender]; sender != "" {
		// A rejection answers its sender alone: two saga types may have
		// instances of one id, and only the sender's may react to it.
		md.Extra = maps.Clone(md.Extra)
		if md.Extra == nil {
			md.Extra = map[string]string{}
		}
		md.Extra[MetaSender] = sender
	}
	ar, err := d.unit.Append(ctx, StreamFor(RejectedType, d.md.CorrelationID), events.AnyVersion, events.Event{
		ID: eventID(d.env.ID, -1), Data: ev, Metadata: md,
	})
	if errors.Is(err, events.ErrInvalidEvent) {
		// The command's own metadata leaves no room for the rejection's
		// (the command's id as causation, the sender): every delivery
		// would be refused again, holding up the commands behind it. The
		// rejection is kept in the command's result, without an event.
		res.Rejected = storable(ev.Reason + " (no Rejected event: " + err.Error() + ")")
		return res, d.keep(ctx, res)
	}
	if err != nil {
		return Result{}, fmt.Errorf("command: record rejection of %s: %w", d.env.ID, err)
	}
	res.EventIDs, res.Token = ar.EventIDs, ar.Token
	return res, d.keep(ctx, res)
}

// keep stores res as the command's result, in the delivery's unit.
func (d delivery) keep(ctx context.Context, res Result) error {
	b, err := rowjson.Marshal(storedResult{CommandID: res.CommandID, StreamID: res.StreamID, Events: len(res.EventIDs), Token: res.Token, Rejected: res.Rejected})
	if err != nil {
		return err
	}
	if err := d.rows.Put(ctx, rowNamespace, tableResults, d.env.ID, b, d.env.Token); err != nil {
		return fmt.Errorf("command: store result of %s: %w", d.env.ID, err)
	}
	return nil
}

// claim makes the delivery's unit the only one handling env's command
// until it ends, and reads the command's result row, locked, after the
// claim. Two units may deliver one command at once: consumers of two
// names read the category while a rolling deploy changes Partitions or
// renames the handler, and a redelivery may overlap a unit whose lease
// was lost. A locked read of the missing result row locks nothing on
// PostgreSQL, so both would decide and both commit an outcome (the
// command deposited and rejected), the later result row overwriting the
// earlier. So the unit first writes a claim row of the command and reads
// it locked (feed.Rows.Get's recipe for an exclusive creation): a second
// unit's write of the claim waits until the first unit ends, and its read
// of the result, after the wait, finds what the first committed. Memory
// refuses the later commit instead (feed.ErrConflict), and the command
// comes again. The claim is deleted in the same unit, so it is never
// committed and leaves no row behind.
//
// At the head of a unit of several events (a consumer that is behind) it
// claims all of them, in one statement (the store sends a unit's writes in
// key order, so two units claiming overlapping commands wait for each
// other instead of deadlocking), and reads all their result rows in the
// same round trip (feed.Rows.Prefetch): each command's look-up then costs
// no statement of its own, and claiming adds no round trip, only an upsert
// of the claims before that read and a delete of them in the commit's
// batch. A unit's later
// commands are then claimed already; one whose head claimed nothing (a
// handler that did not call Run for it) claims its own.
func claim(ctx context.Context, u feed.Unit, rows feed.Rows, env events.Envelope) error {
	evs := feed.UnitEvents(ctx)
	var unit unitKey
	if len(evs) > 1 && comparableUnit(u) {
		unit = unitKey{unit: u, head: &evs[0]}
	}
	if len(evs) < 2 || feed.UnitIndex(ctx) != 0 || evs[0].ID != env.ID {
		if _, claimed := claimedUnits.get(unit); unit.head != nil && claimed {
			return nil
		}
		evs = []events.Envelope{env}
	}
	addrs := make([]feed.RowAddress, 0, 2*len(evs))
	for _, ev := range evs {
		if err := rows.Put(ctx, rowNamespace, tableClaims, ev.ID, json.RawMessage(`{}`), ev.Token); err != nil {
			return fmt.Errorf("command: claim %s: %w", ev.ID, err)
		}
		addrs = append(addrs, feed.RowAddress{Namespace: rowNamespace, Table: tableClaims, Key: ev.ID},
			feed.RowAddress{Namespace: rowNamespace, Table: tableResults, Key: ev.ID})
	}
	// The locked read of the claims sends them, which is where a unit
	// waits for another holding one; the results are read after it.
	if err := rows.Prefetch(ctx, feed.LockUpdate, addrs...); err != nil {
		if len(evs) == 1 {
			return fmt.Errorf("command: claim %s and read its result: %w", env.ID, err)
		}
		return fmt.Errorf("command: claim a unit's %d commands and read their results: %w", len(evs), err)
	}
	// The claims hold until the unit ends whether or not they are
	// deleted: deleted, they commit nothing (the delete is held until the
	// commit, with the unit's other writes).
	for _, ev := range evs {
		if err := rows.Delete(ctx, rowNamespace, tableClaims, ev.ID); err != nil {
			return fmt.Errorf("command: claim %s: %w", ev.ID, err)
		}
	}
	if len(evs) > 1 && unit.head != nil {
		claimedUnits.put(unit, true)
	}
	return nil
}

// unitKey names a unit whose head claimed all its events: the unit and
// the address of its first event (feed.UnitEvents).
type unitKey struct {
	unit feed.Unit
	head *events.Envelope
}

// claimedUnits are the units whose head claimed all their events, for
// their later deliveries. An entry keeps its unit and events from being
// reused at the same address.
var claimedUnits unitMemo[unitKey, bool]

func eventID(commandID string, i int) string {
	return uuid.NewSHA1(resultNamespace, fmt.Appendf(nil, "%s\x00%d", commandID, i)).String()
}

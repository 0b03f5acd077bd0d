package saga

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/rowjson"
)

// parkReason says what a parked step waits for: read models (models at
// token) or a retry time.
type parkReason struct {
	models   []string
	token    events.Token
	retryAt  time.Time
	err      error
	attempts int
	// stored is the schema version of a state newer than this build's
	// (known): the step waits for a newer build, not for a retry of its
	// own (awaitNewerBuild).
	stored, known int
	newerWaits    int
}

// park records the step durably and blocks the instance: its later
// messages queue behind it and the consumer moves on.
func (e *Engine) park(ctx context.Context, rows feed.Rows, in *instance, env events.Envelope, r parkReason, prev *parked) error {
	now := e.cfg.Clock.Now().UTC()
	p := &parked{Env: stow(env), Models: r.models, Token: r.token, Since: now, Waiting: now, RetryAt: r.retryAt, Attempts: r.attempts, Resume: in.Status}
	if r.err != nil {
		p.LastError = storable(r.err.Error())
	}
	if prev != nil {
		p.Resume = prev.Resume
		if prev.Env.ID == env.ID && len(r.models) > 0 && len(prev.Models) > 0 {
			p.Since, p.Stuck, p.Waiting = prev.Since, prev.Stuck, prev.Waiting // still the same wait
		}
		if r.err == nil {
			p.Attempts = prev.Attempts
		}
		if r.stored > 0 && prev.NewerWaits > 0 {
			p.Since = prev.Since // still waiting for the newer build
		}
	}
	p.NewerWaits = r.newerWaits
	if p.Resume == StatusParked || p.Resume == "" {
		p.Resume = StatusRunning
	}
	in.Parked, in.Status = p, StatusParked
	entry := HistoryEntry{
		Kind: KindParked, EventID: env.ID, EventType: env.Type, Token: r.token, Models: r.models,
		Detail: e.parkedDetail(r.models, r.token),
	}
	if r.err != nil {
		entry = HistoryEntry{
			Kind: KindRetryScheduled, EventID: env.ID, EventType: env.Type,
			Detail: fmt.Sprintf("attempt %d failed: %v; next at %s", r.attempts, r.err, r.retryAt.Format(time.RFC3339Nano)),
		}
		e.log.WarnContext(ctx, "saga: step failed, retrying later", "saga", in.Saga, "id", in.ID, "event_id", env.ID,
			"attempt", r.attempts, "retry_at", r.retryAt, "error", r.err)
	}
	if r.stored > 0 {
		p.LastError = fmt.Sprintf("state stored at schema v%d, this build knows v%d (deploy the newer build everywhere)", r.stored, r.known)
		entry = HistoryEntry{
			Kind: KindAwaitingNewerBuild, EventID: env.ID, EventType: env.Type,
			Detail: fmt.Sprintf("%s; next try at %s", p.LastError, r.retryAt.Format(time.RFC3339Nano)),
		}
		e.log.WarnContext(ctx, "saga: state is newer than this build; the step waits for a newer build (deploy the newer build everywhere)",
			"saga", in.Saga, "id", in.ID, "event_id", env.ID, "stored_version", r.stored, "build_version", r.known, "retry_at", r.retryAt)
	}
	if err := e.record(ctx, rows, in, entry); err != nil {
		return err
	}
	if err := e.markHandled(ctx, rows, in, env.ID, true); err != nil {
		return err
	}
	if err := e.syncParkIndex(ctx, rows, in); err != nil {
		return err
	}
	if err := e.save(ctx, rows, in); err != nil {
		return err
	}
	if u, ok := events.UnitFromContext(ctx); ok {
		name, models, newer := in.Saga, len(r.models), r.stored > 0
		u.AfterCommit(func() {
			if models > 0 {
				e.metrics.Parks.WithLabelValues(name).Inc()
			}
			if newer {
				e.metrics.NewerState.WithLabelValues(name).Inc()
			}
			e.parkWake.Notify()
		})
	}
	return nil
}

// awaitNewerBuild hands a step back when the instance's state was stored
// by a newer build than this one (the old half of a rolling deploy, a
// rollback). That is no failure of the instance, and no attempt of the
// step: it parks with a retry time, so its later messages queue behind it
// in order and other instances go on, and whichever build runs it next
// either waits again (with backoff, up to Config.MaxRetryBackoff) or, being
// new enough, runs it once with the attempts it had.
func (e *Engine) awaitNewerBuild(ctx context.Context, rows feed.Rows, s *compiled, in *instance, env events.Envelope, need events.Token, prev *parked) error {
	waits, attempts := 1, 0
	if prev != nil {
		waits, attempts = prev.NewerWaits+1, prev.Attempts
	}
	return e.park(ctx, rows, in, env, parkReason{
		retryAt: e.cfg.Clock.Now().UTC().Add(s.cfg.retryDelay(waits)), token: need, attempts: attempts,
		stored: in.StateVersion, known: s.cfg.stateVersion, newerWaits: waits,
	}, prev)
}

// parkedDetail says which of the models a step reads were behind its
// token when it parked: an operator looks at those, not at models that
// had caught up. The step runs once all of them reached the token.
func (e *Engine) parkedDetail(models []string, need events.Token) string {
	var behind []string
	for _, m := range models {
		if e.cfg.Tracker == nil {
			break // no handler reads a model without one: nothing to name
		}
		if pos, ok := e.cfg.Tracker.Position(m); !ok || pos.Before(need) {
			behind = append(behind, m)
		}
	}
	if len(behind) == 0 || len(behind) == len(models) {
		// All of them (or, as they moved meanwhile, none any more).
		return "read models behind the causal token: " + strings.Join(models, ", ")
	}
	return fmt.Sprintf("read models behind the causal token: %s (it reads %s)", strings.Join(behind, ", "), strings.Join(models, ", "))
}

// enqueue queues a message behind the instance's parked or failed step.
func (e *Engine) enqueue(ctx context.Context, rows feed.Rows, in *instance, env events.Envelope) error {
	b, err := rowjson.Marshal(stow(env))
	if err != nil {
		return fmt.Errorf("saga: encode queued message %s: %w", env.ID, err)
	}
	if err := rows.Put(ctx, rowNamespace, tableMailbox, childKey(in.Saga, in.ID, seqKey(in.MailboxTail)), b, env.Token); err != nil {
		return wrapRows(err, "queue message", in.Saga, in.ID)
	}
	in.MailboxTail++
	if err := e.record(ctx, rows, in, about(env, KindQueued, fmt.Sprintf("behind the %s step (%d queued)", in.Status, in.MailboxTail-in.MailboxHead))); err != nil {
		return err
	}
	if err := e.markHandled(ctx, rows, in, env.ID, true); err != nil {
		return err
	}
	if err := e.syncParkIndex(ctx, rows, in); err != nil {
		return err
	}
	return e.save(ctx, rows, in)
}

// IgnoredMessage is a message for an instance that did not exist.
type IgnoredMessage struct {
	At        time.Time `json:"at"`
	EventID   string    `json:"event_id"`
	EventType string    `json:"event_type"`
	Reason    string    `json:"reason"`
}

// ignoredIndex is the value of an ignored-index row (for people reading
// the rows, as endedIndex).
type ignoredIndex struct {
	Saga    string `json:"saga"`
	ID      string `json:"id"`
	EventID string `json:"event_id"`
}

// ignoreMissing records a message for an instance that does not exist, so
// it is visible (Engine.Show) and counted, never silently dropped. No
// instance will ever purge the record, so it is indexed by time for
// retention to find (purgeIgnored); a redelivery rewrites the record with
// a new time and a new index row, and the old row is then stale. It is
// counted as the duplicate it is, not as one more ignored message.
func (e *Engine) ignoreMissing(ctx context.Context, rows feed.Rows, saga, id string, env events.Envelope) error {
	reason := "no instance with this id (the handler is saga.On, which never starts one)"
	if env.Type == TimerFiredType {
		reason = "timer fired for an instance that no longer exists"
	}
	at := e.cfg.Clock.Now().UTC()
	key := childKey(saga, id, env.ID)
	_, seen, err := rows.Get(ctx, rowNamespace, tableIgnored, key, feed.LockNone)
	if err != nil {
		return wrapRows(err, "read ignored message", saga, id)
	}
	b, _ := json.Marshal(IgnoredMessage{At: at, EventID: env.ID, EventType: env.Type, Reason: reason})
	if err := rows.Put(ctx, rowNamespace, tableIgnored, key, b, env.Token); err != nil {
		return wrapRows(err, "record ignored message", saga, id)
	}
	ix, _ := json.Marshal(ignoredIndex{Saga: saga, ID: id, EventID: env.ID})
	if err := rows.Put(ctx, rowNamespace, tableIgnoredIndex, ignoredIndexKey(at, key), ix, env.Token); err != nil {
		return wrapRows(err, "index ignored message", saga, id)
	}
	e.log.InfoContext(ctx, "saga: message for no instance ignored", "saga", saga, "id", id, "event_id", env.ID, "type", env.Type)
	if u, ok := events.UnitFromContext(ctx); ok {
		if seen {
			u.AfterCommit(func() { e.metrics.Duplicates.WithLabelValues(saga).Inc() })
		} else {
			u.AfterCommit(func() { e.metrics.Ignored.WithLabelValues(saga, "no_instance").Inc() })
		}
	}
	return nil
}

// maxInlinePayload is the largest payload a parked, failed or queued
// message keeps in its row; a larger one is read back from the store when
// the message runs. Rows hold at most events.DefaultMaxPayloadBytes, while
// an event may be as large as the store's Limits allow, and an instance
// row holds the state too.
const maxInlinePayload = 16 << 10

// stow returns env as a parked, failed or queued message keeps it: a
// large payload, or large metadata, is left out, to be read back by
// unstow (the whole event, metadata included). A stored event always has
// a payload (one JSON document); the one left out is encoded as null, and
// an event whose payload really is null is simply read back. Sizes are
// those of the row's JSON: a string's quotes and escapes count.
func stow(env events.Envelope) events.Envelope {
	if len(env.Payload) > maxInlinePayload || encodedLen(env.Metadata) > maxInlinePayload {
		env.Payload = nil
		env.Metadata = events.Metadata{}
	}
	return env
}

// encodedLen is v's size in a row.
func encodedLen(v any) int {
	b, err := rowjson.Marshal(v)
	if err != nil {
		return 0 // metadata always encodes; the row's own encoding would report it
	}
	return len(b)
}

// unstow returns the message stow kept, its payload read back from the
// store when stow left it out. Events are never changed, so it is the
// message as it was delivered.
func (e *Engine) unstow(ctx context.Context, env events.Envelope) (events.Envelope, error) {
	if len(env.Payload) > 0 && string(env.Payload) != "null" {
		return env, nil
	}
	// Through the caller's unit, on the connection it holds (see
	// feed.RowsFor).
	var src events.Store = e.cfg.Store
	if u, ok := events.UnitFromContext(ctx); ok && u.Registry() == e.cfg.Store.Registry() {
		src = u
	}
	got, err := src.ReadStream(ctx, env.StreamID, env.Version, 1)
	if err != nil {
		return env, fmt.Errorf("saga: read back message %s (%s version %d): %w", env.ID, env.StreamID, env.Version, err)
	}
	if len(got) != 1 || got[0].ID != env.ID {
		return env, fmt.Errorf("saga: message %s is no longer at %s version %d", env.ID, env.StreamID, env.Version)
	}
	return got[0], nil
}

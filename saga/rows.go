package saga

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/rowjson"
)

// load reads an instance row.
func (e *Engine) load(ctx context.Context, rows feed.Rows, saga, id string, lock feed.Lock) (*instance, bool, error) {
	row, ok, err := rows.Get(ctx, rowNamespace, tableInstance, instanceKey(saga, id), lock)
	if err != nil || !ok {
		return nil, false, wrapRows(err, "read instance", saga, id)
	}
	in := &instance{}
	if err := in.unmarshalRow(row.Value); err != nil {
		return nil, false, fmt.Errorf("saga: instance %s/%s: stored row does not decode: %w", saga, id, err)
	}
	// Every write of the instance keeps its index row in step.
	in.indexed = in.driverOwned()
	in.endedAtLoad = in.ended()
	return in, true, nil
}

// save writes an instance row, bumping its version, and the history
// entries recorded since it was loaded, as one row.
func (e *Engine) save(ctx context.Context, rows feed.Rows, in *instance) error {
	if len(in.pending) > 0 {
		chunks, err := historyRows(in.pending, events.DefaultMaxPayloadBytes)
		if err != nil {
			return fmt.Errorf("saga: encode history: %w", err)
		}
		for _, c := range chunks {
			key := childKey(in.Saga, in.ID, seqKey(c.first))
			if err := rows.Put(ctx, rowNamespace, tableHistory, key, c.value, in.Token); err != nil {
				return wrapRows(err, "write history", in.Saga, in.ID)
			}
		}
		in.pending = nil
	}
	in.Version++
	in.Updated = e.cfg.Clock.Now().UTC()
	if err := e.indexEnded(ctx, rows, in); err != nil {
		return err
	}
	b, err := rowjson.Marshal(in)
	if err != nil {
		return fmt.Errorf("saga: encode instance %s/%s: %w", in.Saga, in.ID, err)
	}
	return wrapRows(rows.Put(ctx, rowNamespace, tableInstance, instanceKey(in.Saga, in.ID), b, in.Token), "write instance", in.Saga, in.ID)
}

// historyRow is a run of consecutive history entries stored as one row,
// keyed by the sequence number of its first.
type historyRow struct {
	first int64
	value json.RawMessage
}

// historyRows encodes a step's history entries as few rows as hold them,
// each at most limit bytes: usually one, but a step that sends hundreds of
// commands or schedules thousands of timers records more than a row
// holds, and refusing the row would fail the unit. Rows are keyed by
// their first entry's sequence number, so reading the rows in key order
// reads the entries in order.
func historyRows(entries []HistoryEntry, limit int) ([]historyRow, error) {
	var (
		out   []historyRow
		buf   = []byte{'['}
		first int64
	)
	for _, h := range entries {
		b, err := json.Marshal(h)
		if err != nil {
			return nil, err
		}
		if len(buf) > 1 && len(buf)+len(b)+2 > limit {
			out = append(out, historyRow{first: first, value: append(buf, ']')})
			buf = []byte{'['}
		}
		if len(buf) == 1 {
			first = h.Seq
		} else {
			buf = append(buf, ',')
		}
		buf = append(buf, b...)
	}
	return append(out, historyRow{first: first, value: append(buf, ']')}), nil
}

// handledRec records that a message reached an instance: applied, or
// queued behind a parked step.
type handledRec struct {
	Seq    int64 `json:"seq,omitempty"`
	Queued bool  `json:"queued,omitempty"`
}

func (e *Engine) handled(ctx context.Context, rows feed.Rows, saga, id, eventID string) (bool, error) {
	_, ok, err := rows.Get(ctx, rowNamespace, tableHandled, childKey(saga, id, eventID), feed.LockNone)
	return ok, wrapRows(err, "read handled record", saga, id)
}

func (e *Engine) markHandled(ctx context.Context, rows feed.Rows, in *instance, eventID string, queued bool) error {
	b, _ := json.Marshal(handledRec{Seq: in.Seq, Queued: queued})
	return wrapRows(rows.Put(ctx, rowNamespace, tableHandled, childKey(in.Saga, in.ID, eventID), b, in.Token), "write handled record", in.Saga, in.ID)
}

// HistoryEntry is one line of an instance's timeline.
type HistoryEntry struct {
	Seq  int64     `json:"seq"`
	At   time.Time `json:"at"`
	Kind string    `json:"kind"`
	// EventID and EventType name the message the entry is about.
	EventID   string `json:"event_id,omitempty"`
	EventType string `json:"event_type,omitempty"`
	Detail    string `json:"detail,omitempty"`
	// Token is the causal token of a wait or a step.
	Token  events.Token `json:"token,omitzero"`
	Models []string     `json:"models,omitempty"`
	Waited string       `json:"waited,omitempty"`
}

// History kinds.
const (
	KindStarted          = "started"
	KindStep             = "step"
	KindIgnored          = "ignored"
	KindQueued           = "queued"
	KindParked           = "parked"
	KindResumed          = "resumed"
	KindStuck            = "stuck"
	KindCommandSent      = "command_sent"
	KindTimerScheduled   = "timer_scheduled"
	KindTimerCancelled   = "timer_cancelled"
	KindTimerFired       = "timer_fired"
	KindTimerStale       = "timer_stale"
	KindCompensation     = "compensation_registered"
	KindCompensating     = "compensating"
	KindRetryScheduled   = "retry_scheduled"
	KindCompleted        = "completed"
	KindFailed           = "failed"
	KindCancelled        = "cancelled"
	KindRetried          = "retried"
	KindNote             = "note"
	KindNoTimeoutHandler = "timer_unhandled"
	// KindPurged: retention deleted the instance's earlier history
	// (EngineConfig.Retention).
	KindPurged = "purged"
	// KindAwaitingNewerBuild: the state was stored by a newer build than
	// the one that took the message, which handed the step back to run
	// once a newer build takes it (deploy it everywhere).
	KindAwaitingNewerBuild = "waiting_for_newer_build"
	// KindRequestRefused: an engine dropped an operator's retry or cancel
	// request the instance could not take (it had ended, say), with why.
	KindRequestRefused = "request_refused"
	// KindTimerRefused: the store refused a due timer's timer-fired event
	// (over its limits), so the timer ran from the instance's rows
	// instead: parked to run at once, or queued behind a blocked step.
	KindTimerRefused = "timer_event_refused"
)

// KindError is recorded by no release: a failed step's error is in its
// retry_scheduled or failed entry.
//
// Deprecated: filter on KindRetryScheduled and KindFailed.
const KindError = "error"

// record adds an entry to the instance's history; save writes it with the
// instance, so a step costs one history row however much it did.
func (e *Engine) record(_ context.Context, _ feed.Rows, in *instance, h HistoryEntry) error {
	h.Detail = storable(h.Detail)
	in.HistorySeq++
	h.Seq = in.HistorySeq
	if h.At.IsZero() {
		h.At = e.cfg.Clock.Now().UTC()
	}
	in.pending = append(in.pending, h)
	return nil
}

// maxHistoryDetail bounds a history entry's detail, in bytes: a command's
// payload, say, is shown in full up to it and cut after.
const maxHistoryDetail = 4 << 10

// storable makes free text (a reason, a note, an error's message, an
// operator's words) fit an instance's rows whatever it holds: PostgreSQL's
// jsonb cannot hold NUL, so each becomes U+FFFD, and the text is cut to
// maxHistoryDetail. Refusing such text instead would fail the unit, which
// the runtime retries and then halts, holding up every other instance of
// the partition.
func storable(s string) string { return rowjson.Text(s, maxHistoryDetail) }

func about(env events.Envelope, kind, detail string) HistoryEntry {
	return HistoryEntry{Kind: kind, EventID: env.ID, EventType: env.Type, Detail: detail}
}

// parkIndex is the row that lists a blocked instance for the driver.
type parkIndex struct {
	Saga    string       `json:"saga"`
	ID      string       `json:"id"`
	Since   time.Time    `json:"since"`
	RetryAt time.Time    `json:"retry_at,omitzero"`
	Models  []string     `json:"models,omitempty"`
	Token   events.Token `json:"token"`
	// Stuck: the step was recorded stuck, so a sweep counts it without
	// reading the instance again.
	Stuck bool `json:"stuck,omitempty"`
	// Type is the stored type of the parked step's event, and Timeout the
	// timer's name when it is a timer's firing: what names the handler,
	// whose Reads in the build that runs the driver are what it waits for.
	Type    string `json:"type,omitempty"`
	Timeout string `json:"timeout,omitempty"`
}

// indexHandler sets what names the parked step's handler in ix.
func indexHandler(ix *parkIndex, env events.Envelope) {
	ix.Type = env.Type
	if env.Type == TimerFiredType {
		var tf TimerFired
		if json.Unmarshal(env.Payload, &tf) == nil {
			ix.Timeout = tf.Name
		}
	}
}

// syncParkIndex keeps the instance's parked-index row in step with
// whether it is blocked on something the driver resolves.
func (e *Engine) syncParkIndex(ctx context.Context, rows feed.Rows, in *instance) error {
	key := instanceKey(in.Saga, in.ID)
	if !in.driverOwned() {
		if !in.indexed {
			// Most steps find no index row: skipping the delete saves a
			// statement per step.
			return nil
		}
		in.indexed = false
		return wrapRows(rows.Delete(ctx, rowNamespace, tableParked, key), "delete parked index", in.Saga, in.ID)
	}
	in.indexed = true
	ix := parkIndex{Saga: in.Saga, ID: in.ID, Since: in.Updated}
	if p := in.Parked; p != nil {
		ix.Since, ix.RetryAt, ix.Models, ix.Token, ix.Stuck = p.Since, p.RetryAt, p.Models, p.Token, p.Stuck
		indexHandler(&ix, p.Env)
	}
	b, _ := json.Marshal(ix)
	return wrapRows(rows.Put(ctx, rowNamespace, tableParked, key, b, in.Token), "write parked index", in.Saga, in.ID)
}

func wrapRows(err error, what, saga, id string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("saga: %s of %s/%s: %w", what, saga, id, err)
}

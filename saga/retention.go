package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/converge-es/converge/events/feed"
)

// Retention (EngineConfig.Retention): an ended instance is listed in the
// ended index when it ends; once Retention has passed, the sweep deletes
// its per-message rows and its claim and leaves the instance row as a
// tombstone. A message ignored for an id with no instance is listed in
// the ignored index; once Retention has passed, the same sweep deletes its
// record, unless an instance with that id has started since (its own
// purge then deletes the record).

// purgedTables hold per-message rows under childKey(saga, id, ""): they
// grow with every message an instance takes, so retention deletes them.
var purgedTables = []string{tableHandled, tableHistory, tableIgnored, tableMailbox}

const (
	// endedPage is how many ended-index rows one list reads.
	endedPage = 100
	// purgeBatch bounds the rows one unit of a purge deletes, so purging an
	// instance with a long history never holds one long transaction.
	purgeBatch = 500
	// purgePassLimit bounds the instances one pass of the background loop
	// purges, so a backlog (retention just enabled) never holds parked
	// steps back for long; the next pass goes on.
	purgePassLimit = 200
	// ignoredPassLimit bounds the ignored-index rows one pass of the
	// background loop looks at, for the same reason. One unit takes a page
	// of them (endedPage): a record and its index row each, well under
	// purgeBatch deletes.
	ignoredPassLimit = 10 * endedPage
)

// Kinds of purge counted by Metrics.Purged.
const (
	purgedInstance = "instance"
	purgedIgnored  = "ignored"
)

// endedIndex is the value of an ended-index row (the key says it all; the
// value is for people reading the rows).
type endedIndex struct {
	Saga string `json:"saga"`
	ID   string `json:"id"`
}

// indexEnded writes the ended-index row of an instance that has ended and
// has none, in the unit of the write that needs it: the step that ends the
// instance, or a late message taken by a purged one.
func (e *Engine) indexEnded(ctx context.Context, rows feed.Rows, in *instance) error {
	if !in.ended() || !in.EndIndexed.IsZero() || in.purging {
		return nil
	}
	if in.Ended.IsZero() && !in.endedAtLoad {
		in.Ended = in.Updated
	}
	in.EndIndexed = in.Updated
	b, _ := json.Marshal(endedIndex{Saga: in.Saga, ID: in.ID})
	return wrapRows(rows.Put(ctx, rowNamespace, tableEnded, endedKey(in.EndIndexed, in.Saga, in.ID), b, in.Token), "write ended index", in.Saga, in.ID)
}

// PurgeEnded purges every instance of the engine's saga types that ended
// more than EngineConfig.Retention ago (see Retention there), and deletes
// the records of messages ignored longer ago than that for ids with no
// instance; it returns how many instances it purged (the records are
// counted in converge_saga_purged_total{kind="ignored"}). The driver
// started by Start runs the same sweep when it starts and at every
// SweepInterval tick (never on the passes between, woken by parks and
// retry times); tests on a virtual clock call it after moving the clock.
// With a negative Retention it does nothing.
func (e *Engine) PurgeEnded(ctx context.Context) (int, error) {
	n, _, err := e.purgeEnded(ctx, 0, 0)
	return n, err
}

// purgeEnded runs one pass of retention over up to limit instances and up
// to ignoredLimit ignored-index rows (0: no limit). It returns how many
// instances it purged, and whether a limit stopped it (a backlog: the
// next pass goes on). Every unit it commits is a whole step, so a pass
// that fails or is cancelled midway leaves nothing the next pass cannot
// finish.
func (e *Engine) purgeEnded(ctx context.Context, limit, ignoredLimit int) (int, bool, error) {
	if e.cfg.Retention < 0 {
		return 0, false, nil
	}
	cutoff := e.cfg.Clock.Now().Add(-e.cfg.Retention)
	n, err := e.purgeInstances(ctx, cutoff, limit)
	more := limit > 0 && n >= limit
	if ctx.Err() != nil {
		return n, more, err
	}
	// The ignored records go on even when an instance failed to purge, so
	// one bad instance never stops them.
	looked, ierr := e.purgeIgnored(ctx, cutoff, ignoredLimit)
	more = more || (ignoredLimit > 0 && looked >= ignoredLimit)
	return n, more, errors.Join(err, ierr)
}

// purgeInstances purges up to limit instances ended before cutoff (0: no
// limit).
func (e *Engine) purgeInstances(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	rows := e.cfg.Store.Rows()
	purged := 0
	after := ""
	for {
		page, err := rows.List(ctx, rowNamespace, tableEnded, feed.RowQuery{After: after, Limit: endedPage})
		if err != nil {
			return purged, fmt.Errorf("saga: list ended instances: %w", err)
		}
		for _, row := range page {
			after = row.Key
			at, saga, id, err := parseEndedKey(row.Key)
			if err != nil {
				e.log.ErrorContext(ctx, "saga: ended-index row with a bad key; skipping", "key", row.Key, "error", err)
				continue
			}
			if at.After(cutoff) {
				return purged, nil // the index sorts by time: the rest is younger
			}
			if _, ok := e.sagas[saga]; !ok {
				continue // another deployment runs it, with its own retention
			}
			ok, err := e.purge(ctx, row.Key, at, saga, id)
			if err != nil {
				return purged, err
			}
			if ok {
				purged++
				if limit > 0 && purged >= limit {
					return purged, nil
				}
			}
		}
		if len(page) < endedPage {
			return purged, nil
		}
	}
}

// purge purges one instance in units of at most purgeBatch deletes each;
// the last also writes the tombstone. It reports whether it purged (false
// for an index row that no longer matched the instance).
func (e *Engine) purge(ctx context.Context, key string, at time.Time, saga, id string) (bool, error) {
	for {
		var done, purged bool
		err := e.withUnit(ctx, func(ctx context.Context, u feed.Unit) error {
			var err error
			done, purged, err = e.purgeBatch(ctx, u, key, at, saga, id)
			return err
		})
		if err != nil || done {
			return purged, err
		}
	}
}

func (e *Engine) purgeBatch(ctx context.Context, u feed.Unit, key string, at time.Time, saga, id string) (done, purged bool, err error) {
	rows := u.Rows()
	// The locked read makes a step of the instance wait for this unit (or
	// this unit for the step), and the checks below see its outcome.
	in, found, err := e.load(ctx, rows, saga, id, feed.LockUpdate)
	if err != nil {
		return false, false, err
	}
	if !found || !in.ended() || !in.EndIndexed.Equal(at) {
		// Ended is final, so this is a stale row (the instance row was
		// deleted, or re-indexed): never touch what it names.
		return true, false, wrapRows(rows.Delete(ctx, rowNamespace, tableEnded, key), "delete ended index", saga, id)
	}
	budget := purgeBatch
	prefix := childKey(saga, id, "")
	for _, table := range purgedTables {
		page, err := rows.List(ctx, rowNamespace, table, feed.RowQuery{Prefix: prefix, Limit: budget})
		if err != nil {
			return false, false, wrapRows(err, "list "+table+" rows", saga, id)
		}
		for _, r := range page {
			if err := rows.Delete(ctx, rowNamespace, table, r.Key); err != nil {
				return false, false, wrapRows(err, "purge "+table+" row", saga, id)
			}
		}
		if budget -= len(page); budget == 0 {
			return false, false, nil // maybe more: the next unit goes on
		}
	}
	now := e.cfg.Clock.Now().UTC()
	in.State, in.Compensations, in.Timers, in.Parked, in.Failed = nil, nil, nil, nil, nil
	// The queued messages were deleted: late messages are ignored, not
	// queued behind them.
	in.MailboxHead = in.MailboxTail
	in.EndIndexed, in.Purged, in.purging = time.Time{}, now, true
	ended := "at an unrecorded time"
	if !in.Ended.IsZero() {
		ended = in.Ended.Format(time.RFC3339)
	}
	if err := e.record(ctx, rows, in, HistoryEntry{Kind: KindPurged, Detail: fmt.Sprintf(
		"history, dedupe and ignored-message records purged by retention (ended %s, EngineConfig.Retention %s)", ended, e.cfg.Retention)}); err != nil {
		return false, false, err
	}
	if err := rows.Delete(ctx, rowNamespace, tableEnded, key); err != nil {
		return false, false, wrapRows(err, "delete ended index", saga, id)
	}
	// The claim only serialises concurrent starts of an id with no
	// instance row; the tombstone now turns every start away by itself.
	if err := rows.Delete(ctx, rowNamespace, tableClaims, instanceKey(saga, id)); err != nil {
		return false, false, wrapRows(err, "delete claim", saga, id)
	}
	if err := e.save(ctx, rows, in); err != nil {
		return false, false, err
	}
	u.AfterCommit(func() { e.metrics.Purged.WithLabelValues(saga, purgedInstance).Inc() })
	return true, true, nil
}

// ignoredDue is one ignored-index row old enough to purge.
type ignoredDue struct {
	key, recordKey, saga, id string
	at                       time.Time
}

// purgeIgnored deletes the records of messages ignored before cutoff for
// ids with no instance, one unit per page of the ignored index, and
// returns how many index rows it looked at (up to about limit; 0: no
// limit).
func (e *Engine) purgeIgnored(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	rows := e.cfg.Store.Rows()
	looked := 0
	after := ""
	for {
		page, err := rows.List(ctx, rowNamespace, tableIgnoredIndex, feed.RowQuery{After: after, Limit: endedPage})
		if err != nil {
			return looked, fmt.Errorf("saga: list ignored-message index: %w", err)
		}
		var due []ignoredDue
		young := false
		for _, row := range page {
			at, recordKey, saga, id, err := parseIgnoredIndexKey(row.Key)
			if err != nil {
				after = row.Key
				e.log.ErrorContext(ctx, "saga: ignored-index row with a bad key; skipping", "key", row.Key, "error", err)
				continue
			}
			if at.After(cutoff) {
				young = true // the index sorts by time: the rest is younger
				break
			}
			after = row.Key
			if _, ok := e.sagas[saga]; !ok {
				continue // another deployment runs it, with its own retention
			}
			due = append(due, ignoredDue{key: row.Key, recordKey: recordKey, saga: saga, id: id, at: at})
		}
		if len(due) > 0 {
			if err := e.withUnit(ctx, func(ctx context.Context, u feed.Unit) error { return e.purgeIgnoredUnit(ctx, u, due) }); err != nil {
				return looked, err
			}
			looked += len(due)
		}
		if young || len(page) < endedPage || (limit > 0 && looked >= limit) {
			return looked, nil
		}
	}
}

// purgeIgnoredUnit deletes, in one unit, the index rows in due and the
// records they name, so a failure or a crash leaves each pair whole for
// the next pass.
func (e *Engine) purgeIgnoredUnit(ctx context.Context, u feed.Unit, due []ignoredDue) error {
	rows := u.Rows()
	purged := map[string]float64{}
	for _, d := range due {
		// The locked read makes a redelivery of the message that rewrites
		// the record wait for this unit (or this unit for it), so a
		// record younger than Retention is never deleted.
		row, found, err := rows.Get(ctx, rowNamespace, tableIgnored, d.recordKey, feed.LockUpdate)
		if err != nil {
			return wrapRows(err, "read ignored message", d.saga, d.id)
		}
		var m IgnoredMessage
		// A record rewritten at another time has an index row of its own:
		// this one is stale. One that does not decode is purged all the
		// same.
		if found && (json.Unmarshal(row.Value, &m) != nil || m.At.Equal(d.at)) {
			// An instance started with this id since owns the record: its
			// own purge deletes it once it has ended. (A start racing this
			// unit at most loses a record older than Retention.)
			_, live, err := rows.Get(ctx, rowNamespace, tableInstance, instanceKey(d.saga, d.id), feed.LockNone)
			if err != nil {
				return wrapRows(err, "read instance", d.saga, d.id)
			}
			if !live {
				if err := rows.Delete(ctx, rowNamespace, tableIgnored, d.recordKey); err != nil {
					return wrapRows(err, "purge ignored message", d.saga, d.id)
				}
				// Ignoring the message claimed the id (see deliver); with no
				// instance, the claim only serialised that ignore with
				// starts, and the next ignore or start claims it again.
				if err := rows.Delete(ctx, rowNamespace, tableClaims, instanceKey(d.saga, d.id)); err != nil {
					return wrapRows(err, "delete claim", d.saga, d.id)
				}
				purged[d.saga]++
			}
		}
		if err := rows.Delete(ctx, rowNamespace, tableIgnoredIndex, d.key); err != nil {
			return wrapRows(err, "delete ignored index", d.saga, d.id)
		}
	}
	u.AfterCommit(func() {
		for saga, n := range purged {
			e.metrics.Purged.WithLabelValues(saga, purgedIgnored).Add(n)
		}
	})
	return nil
}

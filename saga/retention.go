package saga

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/converge-es/converge/events/feed"
)

// Retention (EngineConfig.Retention): an ended instance is listed in the
// ended index when it ends; once Retention has passed, the sweep deletes
// its per-message rows and leaves the instance row as a tombstone.

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
// more than EngineConfig.Retention ago (see Retention there) and returns
// how many it purged. The driver started by Start calls it every
// SweepInterval; tests on a virtual clock call it after moving the clock.
// With a negative Retention it does nothing.
func (e *Engine) PurgeEnded(ctx context.Context) (int, error) {
	return e.purgeEnded(ctx, 0)
}

// purgeEnded purges up to limit instances (0: no limit).
func (e *Engine) purgeEnded(ctx context.Context, limit int) (int, error) {
	if e.cfg.Retention < 0 {
		return 0, nil
	}
	cutoff := e.cfg.Clock.Now().Add(-e.cfg.Retention)
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
	if err := e.save(ctx, rows, in); err != nil {
		return false, false, err
	}
	u.AfterCommit(func() { e.metrics.Purged.WithLabelValues(saga).Inc() })
	return true, true, nil
}

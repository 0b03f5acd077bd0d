package feed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/internal/rowjson"
)

// ReplaysTable, in RuntimeNamespace, holds the replay requests of dead
// letters, keyed like the dead letter ("<checkpoint name>/<event id>").
// Anyone with the store's rows can request a replay (RequestReplay, or
// `converge dead-letters replay`); only a running processor has the
// handler, so the processor holding the dead letter's partition carries
// it out.
const ReplaysTable = "replays"

// ErrNoDeadLetter is returned by RequestReplay for a key that names no
// dead letter.
var ErrNoDeadLetter = errors.New("feed: no such dead letter")

// ReplayRequest is a request to apply a dead letter again.
type ReplayRequest struct {
	// Key is the dead letter's key: "<checkpoint name>/<event id>".
	Key string `json:"key"`
	// Checkpoint is the partition that dead-lettered the event.
	Checkpoint  string    `json:"checkpoint"`
	RequestedAt time.Time `json:"requested_at"`
	// Failed is the handler's error when the replay failed; the dead
	// letter stays and the request is not tried again until it is made
	// again. Empty while the request waits.
	Failed   string    `json:"failed,omitempty"`
	FailedAt time.Time `json:"failed_at,omitzero"`
}

// RequestReplay records a request to apply the dead letter stored under
// key again. The processor holding the dead letter's partition picks it up
// within its ReplayCheckInterval and, in one unit fenced by its lease,
// applies the event through its handler and deletes both the dead letter
// and the request; if the handler fails, the request records the error
// (ReadReplay) and the dead letter stays. A request made again replaces a
// failed one.
func RequestReplay(ctx context.Context, rows Rows, key string) (ReplayRequest, error) {
	if err := ValidateRowAddress(RuntimeNamespace, DeadLettersTable, key); err != nil {
		// No dead letter can have this key: say so, as for any unknown one.
		return ReplayRequest{}, fmt.Errorf("%w: %.100q cannot name one (%w)", ErrNoDeadLetter, key, err)
	}
	row, ok, err := rows.Get(ctx, RuntimeNamespace, DeadLettersTable, key, LockNone)
	if err != nil {
		return ReplayRequest{}, fmt.Errorf("feed: read dead letter %q: %w", key, err)
	}
	if !ok {
		return ReplayRequest{}, fmt.Errorf("%w: %q (list them with `converge dead-letters list`)", ErrNoDeadLetter, key)
	}
	var rec DeadLetterRecord
	if err := json.Unmarshal(row.Value, &rec); err != nil {
		return ReplayRequest{}, fmt.Errorf("feed: dead letter %q does not decode: %w", key, err)
	}
	req := ReplayRequest{Key: key, Checkpoint: rec.Checkpoint, RequestedAt: time.Now().UTC()}
	b, err := json.Marshal(req)
	if err != nil {
		return ReplayRequest{}, fmt.Errorf("feed: encode replay request: %w", err)
	}
	if err := rows.Put(ctx, RuntimeNamespace, ReplaysTable, key, b, rec.Event.Token); err != nil {
		return ReplayRequest{}, fmt.Errorf("feed: record replay request %q: %w", key, err)
	}
	return req, nil
}

// ReadReplay returns the replay request stored under key, and false when
// there is none (never made, or carried out).
func ReadReplay(ctx context.Context, rows Rows, key string) (ReplayRequest, bool, error) {
	row, ok, err := rows.Get(ctx, RuntimeNamespace, ReplaysTable, key, LockNone)
	if err != nil || !ok {
		return ReplayRequest{}, false, err
	}
	var req ReplayRequest
	if err := json.Unmarshal(row.Value, &req); err != nil {
		return ReplayRequest{}, false, fmt.Errorf("feed: replay request %q does not decode: %w", key, err)
	}
	return req, true, nil
}

// replayLookupTimeout is the least time a look-up for replay requests is
// given.
const replayLookupTimeout = 10 * time.Second

// pollReplays looks for replay requests of this processor every
// ReplayCheckInterval while one of its partitions is delivering here, and
// wakes the partitions that have some: each carries its requests out on
// its own delivery goroutine, under its lease.
func (p *Processor) pollReplays(ctx context.Context) {
	t := time.NewTicker(p.cfg.ReplayCheckInterval)
	defer t.Stop()
	for {
		p.checkReplays(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *Processor) checkReplays(ctx context.Context) {
	byName := map[string]*partitionState{}
	for _, ps := range p.parts {
		ps.mu.Lock()
		if ps.state == PartitionActive {
			byName[ps.name] = ps
		}
		ps.mu.Unlock()
	}
	if len(byName) == 0 {
		return
	}
	// The bound stops a look-up that hangs; it is not the interval, which
	// may be far shorter than a busy database takes to answer (every
	// look-up would then run out of time, and no request be found).
	lctx, cancel := context.WithTimeout(ctx, max(p.cfg.ReplayCheckInterval, replayLookupTimeout))
	defer cancel()
	rows, err := p.replayRequests(lctx)
	if err != nil {
		if ctx.Err() == nil {
			p.cfg.Logger.Debug("feed: look for replay requests", "processor", p.cfg.Name, "error", err)
		}
		return
	}
	for _, r := range rows {
		var req ReplayRequest
		if json.Unmarshal(r.Value, &req) != nil || req.Failed != "" {
			continue
		}
		if ps := byName[req.Checkpoint]; ps != nil {
			ps.replayDue.Store(true)
			ps.replayWake.Notify()
			continue
		}
		if p.formerCheckpoint(req.Checkpoint) {
			// A dead letter of a previous partition count: the partition
			// its event belongs to now serves it, which each active one
			// checks for itself.
			for _, ps := range byName {
				ps.replayDue.Store(true)
				ps.replayWake.Notify()
			}
		}
	}
}

// replayRequests lists every replay request of the processor's
// checkpoints, under any partition count (processorRows).
func (p *Processor) replayRequests(ctx context.Context) ([]Row, error) {
	var out []Row
	err := processorRows(ctx, p.src.Rows(), ReplaysTable, p.cfg.Name, func(r Row) bool {
		out = append(out, r)
		return true
	})
	return out, err
}

// formerCheckpoint reports whether name is one of this processor's
// checkpoints under a partition count other than the current one.
func (p *Processor) formerCheckpoint(name string) bool {
	if name != p.cfg.Name && !strings.HasPrefix(name, p.cfg.Name+"#") {
		return false
	}
	return !slices.ContainsFunc(p.parts, func(ps *partitionState) bool { return ps.name == name })
}

// sweepReplays carries out the partition's replay requests, on its
// delivery goroutine between reads, so nothing else moves its checkpoint
// meanwhile. It returns an error only when delivery must stop (the lease
// is lost, the Source closed, ctx ended).
func (p *Processor) sweepReplays(ctx context.Context, ps *partitionState, lease Lease, pos events.Token) error {
	if !ps.replayDue.Swap(false) {
		return nil
	}
	// The processor's whole prefix: this partition's requests, and those
	// for dead letters recorded under a previous partition count, which
	// nobody holds the checkpoints of any more.
	rows, err := p.replayRequests(ctx)
	if err != nil {
		ps.replayDue.Store(true) // the next poll tries again
		return p.stopErr(ctx, err)
	}
	for _, r := range rows {
		var req ReplayRequest
		if json.Unmarshal(r.Value, &req) != nil || req.Failed != "" {
			continue
		}
		former := p.formerCheckpoint(req.Checkpoint)
		if req.Checkpoint != ps.name && !former {
			continue
		}
		if err := p.replayOne(ctx, ps, lease, pos, r.Key, former); err != nil {
			return err
		}
	}
	return nil
}

// stopErr keeps the errors that must end delivery and drops the rest.
func (p *Processor) stopErr(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return context.Cause(ctx)
	case errors.Is(err, ErrLeaseLost), errors.Is(err, events.ErrClosed):
		return err
	}
	return nil
}

// replayOne applies one dead letter again in a unit of its own: the
// handler's writes, the deletion of the dead letter and of the request
// commit together, fenced by the partition's lease (the checkpoint is
// committed where it is). A dead letter of a former partition count is
// left to the partition its event belongs to now.
func (p *Processor) replayOne(ctx context.Context, ps *partitionState, lease Lease, pos events.Token, key string, former bool) error {
	rows := p.src.Rows()
	row, ok, err := rows.Get(ctx, RuntimeNamespace, DeadLettersTable, key, LockNone)
	if err != nil {
		return p.stopErr(ctx, err)
	}
	if !ok {
		// Replayed already, or deleted: the request has nothing to do.
		return p.stopErr(ctx, rows.Delete(ctx, RuntimeNamespace, ReplaysTable, key))
	}
	var rec DeadLetterRecord
	if err := json.Unmarshal(row.Value, &rec); err != nil {
		return p.replayFailed(ctx, key, fmt.Errorf("the dead letter does not decode: %w", err))
	}
	env := rec.Event
	if former && PartitionOf(KeyOf(p.cfg.PartitionKey, env), p.cfg.Partitions) != ps.index {
		return nil // another partition's now
	}
	hctx := ctx
	if p.cfg.Gate != nil {
		g, err := p.gate(ctx, env, true)
		if err != nil {
			// The gate could not tell (its read failed, or the delivery
			// ended): that says nothing of the event, unlike a handler's
			// failure. The request stays, to be tried again at the next
			// sweep, as when the unit cannot begin.
			ps.replayDue.Store(true)
			if stop := p.stopErr(ctx, err); stop != nil {
				return stop
			}
			p.cfg.Logger.Warn("feed: gate of a replayed dead letter failed; trying again", "processor", p.cfg.Name, "key", key, "error", err)
			return nil
		}
		hctx = contextWithGate(hctx, g)
	}
	u, err := p.src.Checkpoints().Begin(ctx)
	if err != nil {
		ps.replayDue.Store(true)
		return p.stopErr(ctx, err)
	}
	uctx := contextWithUnitIndex(u.Context(hctx), 0)
	err = p.call(uctx, env)
	if err == nil {
		err = u.Rows().Delete(uctx, RuntimeNamespace, DeadLettersTable, key)
	}
	if err == nil {
		err = u.Rows().Delete(uctx, RuntimeNamespace, ReplaysTable, key)
	}
	if err != nil {
		_ = u.Rollback(context.WithoutCancel(ctx))
		if stop := p.stopErr(ctx, err); stop != nil {
			return stop
		}
		return p.replayFailed(ctx, key, err)
	}
	// Only over pos, where the partition stands: after a commit whose reply
	// was lost, pos is behind the stored checkpoint, and a move to it
	// would take the checkpoint back and have the events of that commit
	// applied a second time. Refused, the partition takes its lease again
	// from the stored checkpoint, and the replay is tried after.
	if err := u.Commit(ctx, Move{Lease: lease, Position: pos, From: &pos}); err != nil {
		_ = u.Rollback(context.WithoutCancel(ctx))
		ps.replayDue.Store(true)
		if stop := p.stopErr(ctx, err); stop != nil {
			return stop
		}
		p.cfg.Logger.Warn("feed: commit of a replayed dead letter failed; trying again", "processor", p.cfg.Name, "key", key, "error", err)
		return nil
	}
	p.cfg.Logger.Info("feed: dead letter replayed", "processor", p.cfg.Name, "partition", ps.index, "event_id", env.ID, "type", env.Type)
	return nil
}

// replayFailed records the handler's error in the request, where the
// operator who asked for it reads it; the dead letter stays.
func (p *Processor) replayFailed(ctx context.Context, key string, cause error) error {
	p.cfg.Logger.Warn("feed: replay of a dead letter failed; it stays a dead letter", "processor", p.cfg.Name, "key", key, "error", cause)
	req, ok, err := ReadReplay(ctx, p.src.Rows(), key)
	if err != nil || !ok {
		return p.stopErr(ctx, err)
	}
	req.Failed, req.FailedAt = rowjson.TextWithin(strings.TrimSpace(cause.Error()), maxReason), time.Now().UTC()
	b, _ := json.Marshal(req) // strings and times: cannot fail
	return p.stopErr(ctx, p.src.Rows().Put(ctx, RuntimeNamespace, ReplaysTable, key, b, events.Token{}))
}

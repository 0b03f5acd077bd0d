package drive

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// Handler is the handler shape feed.Processor calls.
type Handler func(ctx context.Context, env events.Envelope) error

// Driver reads the feed after its position and runs Handler on every event
// that passes Filter. Not safe for concurrent use.
type Driver struct {
	Source  feed.Source
	Filter  feed.Filter
	Handler Handler
	// Before, when set, runs before each event is handled.
	Before func(ctx context.Context) error
	// Conflicts bounds retries of a unit after feed.ErrConflict. Defaults
	// to 20.
	Conflicts int
	pos       events.Token
}

// Position returns how far the driver got.
func (d *Driver) Position() events.Token { return d.pos }

// Drain handles every event readable now and returns how many it handled.
// On a handler error it stops before the event (Skip moves past it).
func (d *Driver) Drain(ctx context.Context) (int, error) {
	n := 0
	for {
		b, err := Read(ctx, d.Source, d.pos, d.Filter, 100)
		if err != nil {
			return n, err
		}
		for _, env := range b.Events {
			if d.Before != nil {
				if err := d.Before(ctx); err != nil {
					return n, err
				}
			}
			if err := d.Run(ctx, env); err != nil {
				return n, err
			}
			d.pos = env.Token
			n++
		}
		if b.ScannedTo.After(d.pos) {
			d.pos = b.ScannedTo
		}
		if len(b.Events) == 0 {
			return n, nil
		}
	}
}

// Read reads the feed like Source.ReadFeed, but when the read returns
// nothing while committed events are pending (held back behind an older
// open transaction, on PostgreSQL), it waits for them, woken by the feed,
// so a caller that sees an empty batch knows it has read everything
// committed before the call.
func Read(ctx context.Context, src feed.Source, after events.Token, f feed.Filter, limit int) (feed.Batch, error) {
	backoff := time.Millisecond
	for {
		wake := src.Wake()
		b, err := src.ReadFeed(ctx, after, f, limit)
		if err != nil || len(b.Events) > 0 || !b.Pending {
			return b, err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return b, ctx.Err()
		case <-wake:
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, 50*time.Millisecond)
	}
}

// Skip moves past the next event that passes the filter.
func (d *Driver) Skip(ctx context.Context) error {
	b, err := Read(ctx, d.Source, d.pos, d.Filter, 1)
	if err != nil {
		return err
	}
	if len(b.Events) == 0 {
		return errors.New("drive: nothing to skip")
	}
	d.pos = b.Events[0].Token
	return nil
}

// Run handles one event in a unit of its own and commits it, again after
// feed.ErrConflict.
func (d *Driver) Run(ctx context.Context, env events.Envelope) error {
	return Unit(ctx, d.Source, d.Conflicts, func(ctx context.Context) error { return d.Handler(ctx, env) })
}

// Unit runs fn in a unit of its own (its context carries the unit) and
// commits it, again after feed.ErrConflict, up to attempts times (20 when
// 0).
func Unit(ctx context.Context, src feed.Source, attempts int, fn func(ctx context.Context) error) error {
	if attempts <= 0 {
		attempts = 20
	}
	for i := 1; ; i++ {
		u, err := src.Checkpoints().Begin(ctx)
		if err != nil {
			return err
		}
		err = fn(u.Context(events.ContextWithUnit(ctx, u)))
		if err == nil {
			err = u.Commit(ctx)
		}
		if err == nil {
			return nil
		}
		_ = u.Rollback(context.WithoutCancel(ctx))
		if !errors.Is(err, feed.ErrConflict) || i >= attempts {
			return fmt.Errorf("drive: %w", err)
		}
	}
}

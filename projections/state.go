package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// Where projections keep their state, as feed.Rows. The state machine below
// is written once over feed.Unit and feed.Rows, so it is the same code, with
// the same locks, on PostgreSQL and in memory.
const (
	// StateTable is the table, in feed.RuntimeNamespace, holding one state
	// row per projection, keyed by its name.
	StateTable = "projections"
	// strongLockTable, in feed.RuntimeNamespace, holds one row per strong
	// projection, keyed by its name, that every append applying it takes
	// with feed.LockUpdate (strong.go).
	strongLockTable = "projection_strong_locks"
	// rowNamespacePrefix starts the namespace of a generation's read-model
	// rows: "projection/<name>/<generation>".
	rowNamespacePrefix = "projection/"
)

// rowNamespace is the feed.Rows namespace of one generation's tables.
func rowNamespace(name string, gen int) string {
	return rowNamespacePrefix + name + "/" + strconv.Itoa(gen)
}

// rebuildName is the processor (and checkpoint) name of a rebuild: each
// rebuild has its own, so it starts from the beginning of the feed.
func rebuildName(name string, gen int) string {
	return name + "@rebuild-" + strconv.Itoa(gen)
}

// state is a projection's state row. Every unit that applies events takes
// it with feed.LockShare, and every change to it takes it with
// feed.LockUpdate: on PostgreSQL a switch waits for the units in flight and
// they wait for it; in memory one of two racing units fails at commit with
// feed.ErrConflict and runs again. Either way no unit applies an event to a
// generation that stopped being the one it read.
type state struct {
	Class consistency.Class `json:"class"`
	// Active is the generation readers read and the live processor writes.
	Active int `json:"active"`
	// Building is the generation a rebuild is writing, 0 when none.
	Building int `json:"building,omitempty"`
	// BuildingTypes lists the event types handled by the build whose
	// runner began the rebuild (stored names, aliases included, sorted), and
	// BuildingSince when: only runners of a build handling the same types
	// run it and switch it in. During a rolling deploy an older build,
	// judging the feed by its own handlers, would switch in a generation
	// missing what only the newer one handles; a newer build restarts a
	// rebuild an older one began. Empty in rows written before they were
	// recorded: any runner may run such a rebuild.
	BuildingTypes []string  `json:"building_types,omitempty"`
	BuildingSince time.Time `json:"building_since,omitzero"`
	// Last is the highest generation ever created: a new one takes the
	// next number, so it never shares a namespace with one still being
	// dropped.
	Last int `json:"last"`
	// SkipTo is the rebuild position the active generation was switched in
	// at: it already reflects every event up to it, so the live processor,
	// whose checkpoint may be behind, moves past those without applying
	// them again.
	SkipTo events.Token `json:"skip_to"`
	// MarksUpTo is where the last Reset found the feed: the append hook's
	// marks on events up to it are ignored, since the Reset asked for those
	// events to be applied again.
	MarksUpTo events.Token `json:"marks_up_to"`
	// Dropping lists old generations whose rows are being deleted, in
	// short batches, off the delivery path.
	Dropping []int `json:"dropping,omitempty"`
}

// readState reads name's state row through rows with lock, and false when
// the projection was never registered.
func readState(ctx context.Context, rows feed.Rows, name string, lock feed.Lock) (state, bool, error) {
	row, ok, err := rows.Get(ctx, feed.RuntimeNamespace, StateTable, name, lock)
	if err != nil || !ok {
		return state{}, false, err
	}
	var st state
	if err := json.Unmarshal(row.Value, &st); err != nil {
		return state{}, false, fmt.Errorf("projections: state of %q does not decode: %w", name, err)
	}
	return st, true, nil
}

// mustState is readState that reports an unregistered projection as
// ErrNotRegistered.
func mustState(ctx context.Context, rows feed.Rows, name string, lock feed.Lock) (state, error) {
	// A name no state row can be stored under (empty, control characters,
	// too long) was never registered: say that, not that the row is bad.
	if verr := feed.ValidateRowAddress(feed.RuntimeNamespace, StateTable, name); verr != nil {
		return state{}, fmt.Errorf("%w: %q cannot name a projection (%w)", ErrNotRegistered, name, verr)
	}
	st, ok, err := readState(ctx, rows, name, lock)
	if err != nil {
		return state{}, fmt.Errorf("projections: read state of %q: %w", name, err)
	}
	if !ok {
		return state{}, fmt.Errorf("%w: %q", ErrNotRegistered, name)
	}
	return st, nil
}

// writeState stores st as name's state row through rows.
func writeState(ctx context.Context, rows feed.Rows, name string, st state, tok events.Token) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("projections: encode state of %q: %w", name, err)
	}
	if err := rows.Put(ctx, feed.RuntimeNamespace, StateTable, name, b, tok); err != nil {
		return fmt.Errorf("projections: write state of %q: %w", name, err)
	}
	return nil
}

// withUnit runs fn in a unit of its own and commits it (no checkpoint
// moves). In memory a conflict with a concurrent unit runs fn again.
func withUnit(ctx context.Context, cps feed.CheckpointStore, fn func(ctx context.Context, u feed.Unit) error) error {
	for attempt := 1; ; attempt++ {
		u, err := cps.Begin(ctx)
		if err != nil {
			return err
		}
		uctx := u.Context(ctx)
		if err := fn(uctx, u); err != nil {
			_ = u.Rollback(context.WithoutCancel(ctx))
			return err
		}
		err = u.Commit(ctx)
		if err == nil {
			return nil
		}
		_ = u.Rollback(context.WithoutCancel(ctx))
		if !isConflict(err) || attempt >= maxConflictRetries || ctx.Err() != nil {
			return err
		}
	}
}

// maxConflictRetries bounds withUnit's reruns after feed.ErrConflict.
const maxConflictRetries = 20

func isConflict(err error) bool { return err != nil && errors.Is(err, feed.ErrConflict) }

// register creates name's state row if it is missing: generation 1, built
// from the start of the feed.
func register(ctx context.Context, cps feed.CheckpointStore, c *compiled) error {
	return withUnit(ctx, cps, func(ctx context.Context, u feed.Unit) error {
		st, ok, err := readState(ctx, u.Rows(), c.name, feed.LockUpdate)
		if err != nil {
			return fmt.Errorf("projections: register %q: %w", c.name, err)
		}
		if c.class == consistency.Strong {
			// Before the hook runs: on PostgreSQL a locked read of a row
			// that does not exist locks nothing.
			_, held, err := u.Rows().Get(ctx, feed.RuntimeNamespace, strongLockTable, c.name, feed.LockNone)
			if err != nil {
				return fmt.Errorf("projections: register %q: %w", c.name, err)
			}
			if !held {
				if err := u.Rows().Put(ctx, feed.RuntimeNamespace, strongLockTable, c.name, []byte("{}"), events.Token{}); err != nil {
					return fmt.Errorf("projections: register %q: %w", c.name, err)
				}
			}
		}
		if ok && st.Class == c.class {
			return nil
		}
		if !ok {
			st = state{Active: 1, Last: 1}
		}
		st.Class = c.class
		return writeState(ctx, u.Rows(), c.name, st, events.Token{})
	})
}

// removeDropped takes gen off name's Dropping list once its rows are gone.
func removeDropped(ctx context.Context, cps feed.CheckpointStore, name string, gen int) error {
	return withUnit(ctx, cps, func(ctx context.Context, u feed.Unit) error {
		st, err := mustState(ctx, u.Rows(), name, feed.LockUpdate)
		if err != nil {
			return err
		}
		if !slices.Contains(st.Dropping, gen) {
			return nil
		}
		st.Dropping = slices.DeleteFunc(st.Dropping, func(g int) bool { return g == gen })
		return writeState(ctx, u.Rows(), name, st, events.Token{})
	})
}

package eventstoretest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// lockProbe is implemented by a store whose statements can wait on another
// transaction's lock (pgstore.Store): the suite asks its database which
// statements of the store's schema wait, to know a unit is waiting rather
// than not yet started.
type lockProbe interface {
	Pool() *pgxpool.Pool
	Schema() string
}

// awaitLockWait returns a channel closed once a statement on s's schema
// waits for a lock, on a store that can tell (lockProbe); on any other
// store it is never closed. The probe stops when the test ends.
func awaitLockWait(t *testing.T, s events.Store) <-chan struct{} {
	t.Helper()
	ch := make(chan struct{})
	p, ok := s.(lockProbe)
	if !ok {
		return ch
	}
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	go func() {
		tick := time.NewTicker(pollEvery)
		defer tick.Stop()
		for {
			var n int
			err := p.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock' AND position($1 in query) > 0`,
				p.Schema()).Scan(&n)
			if err == nil && n > 0 {
				close(ch)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return ch
}

// A duplicate of an event id another open unit holds fails the unit: it
// can only roll back, and nothing it wrote is stored. Memory refuses the
// append at once; on PostgreSQL the append waits on the holder's
// transaction (the unique index) and fails when the holder commits, which
// aborts the waiting unit's transaction. The test commits the holder only
// once the append was refused or is seen waiting, so both orders are the
// documented one. (Had the holder rolled back instead, PostgreSQL would
// store the waiting append, while memory has refused it already.)
func testDuplicateOfHeldEventFailsTheUnit(t *testing.T, src feed.Source, s events.Store) {
	ctx := t.Context()
	ev := placed("1", 1)
	holder := begin(t, src)
	_, err := holder.Append(ctx, "order-1", events.NoStream, ev)
	require.NoError(t, err)

	dup := begin(t, src)
	_, err = dup.Append(ctx, "order-3", events.NoStream, placed("3", 1))
	require.NoError(t, err, "the unit's own append before the duplicate")
	waiting := awaitLockWait(t, s)
	done := make(chan error, 1)
	go func() {
		_, err := dup.Append(ctx, "order-2", events.NoStream, ev)
		done <- err
	}()
	var dupErr error
	answered := false
	select {
	case dupErr = <-done:
		answered = true
		t.Log("the duplicate append was refused at once, with the holder open")
	case <-waiting:
		t.Log("the duplicate append waits for the holder to end")
	case <-time.After(waitFor):
		t.Fatal("the duplicate append neither failed nor waited for the unit holding the id")
	}
	require.NoError(t, holder.Commit(ctx))
	if !answered {
		select {
		case dupErr = <-done:
		case <-time.After(waitFor):
			t.Fatal("the duplicate append still waits after the holder committed")
		}
	}
	require.ErrorIs(t, dupErr, events.ErrDuplicateEvent)

	// Nothing but Rollback works on the failed unit (on PostgreSQL its
	// transaction is aborted): a handler that took the duplicate for
	// "already done" and went on would see its later calls fail, not
	// succeed and be lost at the commit.
	_, err = dup.Append(ctx, "order-4", events.NoStream, placed("4", 1))
	require.Error(t, err, "an append through the failed unit")
	_, err = dup.StreamVersion(ctx, "order-3")
	require.Error(t, err, "a read through the failed unit")
	_, err = dup.ReadStream(ctx, "order-3", 1, 0)
	require.Error(t, err, "a read through the failed unit")
	_, _, err = dup.Rows().Get(ctx, "dup", "t", "k", feed.LockNone)
	require.Error(t, err, "a row read through the failed unit")
	_, err = dup.Positions(ctx, "some-checkpoint")
	require.Error(t, err, "a position read through the failed unit")

	require.Error(t, dup.Commit(ctx), "a unit that appended a held id can only roll back")
	// The failed Commit discarded the unit: it has ended, and holds
	// nothing back (the append to order-3 below would wait on it).
	_, err = dup.StreamVersion(ctx, "order-3")
	require.ErrorIs(t, err, events.ErrUnitEnded, "a unit whose Commit failed has ended")
	actx, cancel := context.WithTimeout(ctx, waitFor)
	defer cancel()
	_, err = s.Append(actx, "order-3", events.NoStream, placed("5", 1))
	require.NoError(t, err, "an append to a stream the failed unit had appended to")
	require.NoError(t, dup.Rollback(ctx))
	for stream, want := range map[string]int64{"order-1": 1, "order-2": 0, "order-3": 1, "order-4": 0} {
		v, err := s.StreamVersion(ctx, stream)
		require.NoError(t, err)
		require.Equal(t, want, v, "%s: only the holder's append, and the one after the failed unit, are stored", stream)
	}
	envs, err := s.ReadStream(ctx, "order-1", 1, 0)
	require.NoError(t, err)
	require.Len(t, envs, 1)
	require.Equal(t, ev.ID, envs[0].ID, "the id stays the holder's")
	requireStoreHolds(t, s, 2)
}

package memstore_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

func rawEvent() events.Event {
	return events.Event{Data: events.Raw{Type: "t", Payload: json.RawMessage(`{}`)}}
}

// An open unit's reserved token holds readers back, as an open
// transaction holds PostgreSQL's read horizon: a later append is committed
// but not readable until the unit ends, so no reader passes the unit's
// event and then misses it.
func TestOpenUnitHoldsReadersBack(t *testing.T) {
	t.Parallel()
	for _, end := range []string{"commit", "rollback"} {
		t.Run(end, func(t *testing.T) {
			t.Parallel()
			s, _ := setup(t)
			ctx := t.Context()
			first, err := s.Append(ctx, "a-1", events.NoStream, rawEvent())
			require.NoError(t, err)
			u, err := s.Checkpoints().Begin(ctx)
			require.NoError(t, err)
			held, err := u.Append(ctx, "b-1", events.NoStream, rawEvent())
			require.NoError(t, err)
			later, err := s.Append(ctx, "c-1", events.NoStream, rawEvent())
			require.NoError(t, err)
			require.True(t, held.Token.Before(later.Token), "the unit's token was reserved first")

			b, err := s.ReadFeed(ctx, events.Token{}, feed.Filter{}, 0)
			require.NoError(t, err)
			require.Equal(t, []string{first.EventIDs[0]}, eventIDs(b.Events), "the later append waits behind the unit")
			require.True(t, b.Pending, "and the read says so")
			require.Equal(t, first.Token, b.ScannedTo)
			head, err := s.Head(ctx)
			require.NoError(t, err)
			require.Equal(t, later.Token, head, "Head is the newest committed event")

			wake := s.Wake()
			want := []string{first.EventIDs[0], later.EventIDs[0]}
			if end == "commit" {
				require.NoError(t, u.Commit(ctx))
				want = []string{first.EventIDs[0], held.EventIDs[0], later.EventIDs[0]}
			} else {
				require.NoError(t, u.Rollback(ctx))
			}
			select {
			case <-wake:
			default:
				t.Fatal("the unit's end must wake readers")
			}
			b, err = s.ReadFeed(ctx, events.Token{}, feed.Filter{}, 0)
			require.NoError(t, err)
			require.Equal(t, want, eventIDs(b.Events))
			require.False(t, b.Pending)
		})
	}
}

func eventIDs(envs []events.Envelope) []string {
	out := make([]string, len(envs))
	for i, e := range envs {
		out[i] = e.ID
	}
	return out
}

// Units and plain appenders race on shared streams; a reader following the
// feed must see every committed event exactly once, in token order, and
// none of the rolled-back ones.
func TestConcurrentUnitsAndAppenders(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := t.Context()
	const workers, rounds = 6, 40
	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		committed = map[string]bool{}
		discarded = map[string]bool{}
		errs      []error
	)
	record := func(ids []string, ok bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			if ok {
				committed[id] = true
			} else {
				discarded[id] = true
			}
		}
	}
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
	}
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				stream := fmt.Sprintf("s-%d", (w+r)%3)
				if w%2 == 0 {
					res, err := s.Append(ctx, stream, events.AnyVersion, rawEvent())
					if err != nil {
						fail(err)
						return
					}
					record(res.EventIDs, true)
					continue
				}
				u, err := s.Checkpoints().Begin(ctx)
				if err != nil {
					fail(err)
					return
				}
				res, err := u.Append(ctx, stream, events.AnyVersion, rawEvent(), rawEvent())
				if err != nil {
					fail(err)
					return
				}
				if r%3 == 0 {
					err = u.Rollback(ctx)
					record(res.EventIDs, false)
				} else {
					err = u.Commit(ctx)
					record(res.EventIDs, true)
				}
				if err != nil {
					fail(err)
					return
				}
			}
		})
	}
	// A reader follows the feed while the writers run.
	seen := map[string]bool{}
	var after events.Token
	readAll := func() {
		for {
			b, err := s.ReadFeed(ctx, after, feed.Filter{}, 7)
			require.NoError(t, err)
			for _, env := range b.Events {
				require.True(t, env.Token.After(after), "the feed only moves forward")
				require.False(t, seen[env.ID], "event %s delivered twice", env.ID)
				seen[env.ID] = true
				after = env.Token
			}
			if len(b.Events) == 0 {
				return
			}
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-s.Wake():
		}
		readAll()
	}
	readAll()
	require.Empty(t, errs)
	for id := range committed {
		require.True(t, seen[id], "committed event %s was skipped", id)
	}
	for id := range discarded {
		require.False(t, seen[id], "rolled-back event %s was read", id)
	}
	require.Len(t, seen, len(committed))

	// Streams stay contiguous from version 1.
	for i := range 3 {
		envs, err := s.ReadStream(ctx, fmt.Sprintf("s-%d", i), 1, 0)
		require.NoError(t, err)
		for j, env := range envs {
			require.Equal(t, int64(j+1), env.Version)
		}
	}
}

func TestUnitDuplicateAndEnded(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := t.Context()
	u, err := s.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	ev := rawEvent()
	ev.ID = "0195c1a0-0000-7000-8000-000000000001"
	_, err = u.Append(ctx, "a-1", events.NoStream, ev)
	require.NoError(t, err)
	_, err = s.Append(ctx, "b-1", events.NoStream, ev)
	require.ErrorIs(t, err, events.ErrDuplicateEvent, "an id an open unit reserved is taken")
	require.NoError(t, u.Rollback(ctx))
	_, err = s.Append(ctx, "b-1", events.NoStream, ev)
	require.NoError(t, err, "the rollback freed the id")

	_, err = u.ReadStream(ctx, "a-1", 1, 0)
	require.ErrorIs(t, err, events.ErrUnitEnded)
	_, _, err = u.Rows().Get(ctx, "ns", "t", "k", feed.LockNone)
	require.ErrorIs(t, err, events.ErrUnitEnded)
	_, err = u.Positions(ctx, "c")
	require.ErrorIs(t, err, events.ErrUnitEnded)
}

func TestLockedReadsConflictInMemory(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := t.Context()
	cps := s.Checkpoints()
	l, err := cps.Acquire(ctx, "c", "o", 1<<40)
	require.NoError(t, err)
	a, err := cps.Begin(ctx)
	require.NoError(t, err)
	b, err := cps.Begin(ctx)
	require.NoError(t, err)
	_, _, err = a.Rows().Get(ctx, "ns", "t", "k", feed.LockUpdate)
	require.NoError(t, err)
	_, _, err = b.Rows().Get(ctx, "ns", "t", "k", feed.LockUpdate)
	require.NoError(t, err)
	_, err = b.Positions(ctx, "c")
	require.NoError(t, err)
	require.NoError(t, a.Commit(ctx, feed.Move{Lease: l, Position: events.MakeToken(1, 1)}))
	err = b.Commit(ctx)
	require.ErrorIs(t, err, feed.ErrConflict, "two update locks on one row (even an absent one) exclude each other")

	c, err := cps.Begin(ctx)
	require.NoError(t, err)
	_, err = c.Positions(ctx, "c")
	require.NoError(t, err)
	require.NoError(t, cps.Advance(ctx, l, events.MakeToken(2, 2)))
	require.ErrorIs(t, c.Commit(ctx), feed.ErrConflict, "a position read in the unit moved")

	d, err := cps.Begin(ctx)
	require.NoError(t, err)
	e, err := cps.Begin(ctx)
	require.NoError(t, err)
	_, _, err = d.Rows().Get(ctx, "ns", "t", "k", feed.LockShare)
	require.NoError(t, err)
	_, _, err = e.Rows().Get(ctx, "ns", "t", "k", feed.LockShare)
	require.NoError(t, err)
	require.NoError(t, d.Commit(ctx))
	require.NoError(t, e.Commit(ctx), "share locks do not exclude each other")
}

// TestShareLockCommitConflictsWithUpdateLock covers the order PostgreSQL
// settles by making FOR UPDATE wait: a unit holding a row with LockShare
// commits first, so the unit that took the row with LockUpdate meanwhile
// must not commit what it decided without seeing that commit.
func TestShareLockCommitConflictsWithUpdateLock(t *testing.T) {
	t.Parallel()
	s, _ := setup(t)
	ctx := t.Context()
	cps := s.Checkpoints()
	share, err := cps.Begin(ctx)
	require.NoError(t, err)
	update, err := cps.Begin(ctx)
	require.NoError(t, err)
	_, _, err = share.Rows().Get(ctx, "ns", "t", "k", feed.LockShare)
	require.NoError(t, err)
	_, _, err = update.Rows().Get(ctx, "ns", "t", "k", feed.LockUpdate)
	require.NoError(t, err)
	require.NoError(t, share.Commit(ctx))
	require.ErrorIs(t, update.Commit(ctx), feed.ErrConflict, "the share holder committed while the update lock was held")

	// A share holder that committed before the update lock was taken is
	// already visible to it: no conflict.
	share, err = cps.Begin(ctx)
	require.NoError(t, err)
	_, _, err = share.Rows().Get(ctx, "ns", "t", "k", feed.LockShare)
	require.NoError(t, err)
	require.NoError(t, share.Commit(ctx))
	update, err = cps.Begin(ctx)
	require.NoError(t, err)
	_, _, err = update.Rows().Get(ctx, "ns", "t", "k", feed.LockUpdate)
	require.NoError(t, err)
	require.NoError(t, update.Commit(ctx))
}

package eventstoretest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

const (
	// longTTL outlives any test: a lease held with it never expires by
	// itself.
	longTTL = time.Hour
	// shortTTL expires quickly, for takeover tests.
	shortTTL = 50 * time.Millisecond
)

// commit stores pos for l through a unit of work.
func commit(t *testing.T, cps feed.CheckpointStore, l feed.Lease, pos events.Token) error {
	t.Helper()
	u, err := cps.Begin(t.Context())
	require.NoError(t, err)
	err = u.Commit(u.Context(t.Context()), feed.Move{Lease: l, Position: pos})
	require.NoError(t, u.Rollback(t.Context()), "Rollback after Commit is a no-op")
	return err
}

// requirePosition checks name's stored position.
func requirePosition(t *testing.T, cps feed.CheckpointStore, name string, want events.Token) {
	t.Helper()
	got, err := cps.Position(t.Context(), name)
	require.NoError(t, err)
	require.Equal(t, want, got, "position of %q", name)
}

func testAcquireAndPosition(t *testing.T, src feed.Source, _ events.Store) {
	ctx := t.Context()
	cps := src.Checkpoints()
	requirePosition(t, cps, "projection", events.Token{})

	l, err := cps.Acquire(ctx, "projection", "owner-a", longTTL)
	require.NoError(t, err)
	require.Equal(t, "projection", l.Name)
	require.Equal(t, "owner-a", l.Owner)
	require.True(t, l.Position.IsZero(), "a new consumer starts at the beginning")

	again, err := cps.Acquire(ctx, "projection", "owner-a", longTTL)
	require.NoError(t, err, "the holder may acquire again")
	require.Greater(t, again.Generation, l.Generation, "acquiring again starts a new generation")
	require.Equal(t, l.Position, again.Position)
	l = again

	pos := events.MakeToken(3, 9)
	require.NoError(t, commit(t, cps, l, pos))
	requirePosition(t, cps, "projection", pos)
	later := events.MakeToken(4, 11)
	require.NoError(t, commit(t, cps, l, later))
	requirePosition(t, cps, "projection", later)

	require.NoError(t, cps.Renew(ctx, l, longTTL))
	again, err = cps.Acquire(ctx, "projection", "owner-a", longTTL)
	require.NoError(t, err)
	require.Equal(t, later, again.Position, "Acquire returns the stored position")
	require.Greater(t, again.Generation, l.Generation)

	requirePosition(t, cps, "another-projection", events.Token{})
}

func testLeaseHeldByOther(t *testing.T, src feed.Source, _ events.Store) {
	ctx := t.Context()
	cps := src.Checkpoints()
	_, err := cps.Acquire(ctx, "projection", "owner-a", longTTL)
	require.NoError(t, err)
	_, err = cps.Acquire(ctx, "projection", "owner-b", longTTL)
	require.ErrorIs(t, err, feed.ErrLeaseHeld)

	_, err = cps.Acquire(ctx, "other-projection", "owner-b", longTTL)
	require.NoError(t, err, "leases are per name")
}

// acquireEventually acquires name for owner once the current lease
// expires. Every error but ErrLeaseHeld fails the test.
func acquireEventually(t *testing.T, cps feed.CheckpointStore, name, owner string, ttl time.Duration) feed.Lease {
	t.Helper()
	var (
		l   feed.Lease
		err error
	)
	require.Eventually(t, func() bool {
		l, err = cps.Acquire(t.Context(), name, owner, ttl)
		return !errors.Is(err, feed.ErrLeaseHeld)
	}, waitFor, pollEvery, "the lease on %q never expired", name)
	require.NoError(t, err)
	return l
}

func testLeaseTakeoverAfterExpiry(t *testing.T, src feed.Source, _ events.Store) {
	ctx := t.Context()
	cps := src.Checkpoints()
	a, err := cps.Acquire(ctx, "projection", "owner-a", shortTTL)
	require.NoError(t, err)
	first := events.MakeToken(1, 1)
	require.NoError(t, commit(t, cps, a, first))

	b := acquireEventually(t, cps, "projection", "owner-b", longTTL)
	require.Greater(t, b.Generation, a.Generation, "a takeover starts a new generation")
	require.Equal(t, first, b.Position, "the new owner resumes from the stored position")

	// The old owner is fenced off.
	require.ErrorIs(t, cps.Renew(ctx, a, longTTL), feed.ErrLeaseLost)
	require.ErrorIs(t, commit(t, cps, a, events.MakeToken(9, 9)), feed.ErrLeaseLost)
	requirePosition(t, cps, "projection", first)
	_, err = cps.Acquire(ctx, "projection", "owner-a", longTTL)
	require.ErrorIs(t, err, feed.ErrLeaseHeld, "the new owner's lease is live")

	second := events.MakeToken(2, 2)
	require.NoError(t, commit(t, cps, b, second))
	requirePosition(t, cps, "projection", second)

	// Taking it back is another takeover, with yet another generation.
	b2, err := cps.Acquire(ctx, "projection", "owner-b", shortTTL)
	require.NoError(t, err)
	require.Greater(t, b2.Generation, b.Generation, "acquiring again starts a new generation")
	a2 := acquireEventually(t, cps, "projection", "owner-a", longTTL)
	require.Greater(t, a2.Generation, b2.Generation)
	require.ErrorIs(t, commit(t, cps, b2, events.MakeToken(3, 3)), feed.ErrLeaseLost)
	require.ErrorIs(t, commit(t, cps, a, events.MakeToken(3, 3)), feed.ErrLeaseLost, "an old generation of the same owner is stale too")
	requirePosition(t, cps, "projection", second)
}

// testAcquireBySameOwnerFences: two callers acquiring under one owner
// string (two replicas named alike, a process restarted while its
// predecessor is frozen) do not share the lease: the later Acquire fences
// the earlier one off, which can neither renew, advance, commit nor
// release the lease it no longer holds.
func testAcquireBySameOwnerFences(t *testing.T, src feed.Source, _ events.Store) {
	ctx := t.Context()
	cps := src.Checkpoints()
	first, err := cps.Acquire(ctx, "projection", "pod-0", longTTL)
	require.NoError(t, err)
	second, err := cps.Acquire(ctx, "projection", "pod-0", longTTL)
	require.NoError(t, err, "an Acquire by the holder's owner string is its retry")
	require.Greater(t, second.Generation, first.Generation, "the second Acquire starts a new generation")

	require.ErrorIs(t, commit(t, cps, first, events.MakeToken(1, 1)), feed.ErrLeaseLost, "the earlier caller must not commit")
	require.ErrorIs(t, cps.Advance(ctx, first, events.MakeToken(1, 1)), feed.ErrLeaseLost)
	require.ErrorIs(t, cps.Renew(ctx, first, longTTL), feed.ErrLeaseLost)
	require.NoError(t, cps.Release(ctx, first), "releasing a lost lease is a no-op")
	_, err = cps.Acquire(ctx, "projection", "pod-1", longTTL)
	require.ErrorIs(t, err, feed.ErrLeaseHeld, "the earlier caller's Release must not give up the later one's lease")
	requirePosition(t, cps, "projection", events.Token{})

	pos := events.MakeToken(2, 2)
	require.NoError(t, commit(t, cps, second, pos))
	requirePosition(t, cps, "projection", pos)
}

func testReleaseLetsOthersIn(t *testing.T, src feed.Source, _ events.Store) {
	ctx := t.Context()
	cps := src.Checkpoints()
	a, err := cps.Acquire(ctx, "projection", "owner-a", longTTL)
	require.NoError(t, err)
	pos := events.MakeToken(5, 6)
	require.NoError(t, commit(t, cps, a, pos))
	require.NoError(t, cps.Release(ctx, a))

	b, err := cps.Acquire(ctx, "projection", "owner-b", longTTL)
	require.NoError(t, err, "a released lease can be taken at once")
	require.Greater(t, b.Generation, a.Generation)
	require.Equal(t, pos, b.Position)
	require.ErrorIs(t, commit(t, cps, a, events.MakeToken(7, 7)), feed.ErrLeaseLost)
	requirePosition(t, cps, "projection", pos)
}

func testRollbackDiscards(t *testing.T, src feed.Source, _ events.Store) {
	ctx := t.Context()
	cps := src.Checkpoints()
	l, err := cps.Acquire(ctx, "projection", "owner-a", longTTL)
	require.NoError(t, err)
	require.NoError(t, commit(t, cps, l, events.MakeToken(1, 2)))

	u, err := cps.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, u.Rollback(ctx))
	require.NoError(t, u.Rollback(ctx), "Rollback twice is harmless")
	requirePosition(t, cps, "projection", events.MakeToken(1, 2))
}

func testConcurrentAcquire(t *testing.T, src feed.Source, _ events.Store) {
	cps := src.Checkpoints()
	const owners = 8
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		winners  []feed.Lease
		failures []error
	)
	for i := range owners {
		wg.Go(func() {
			l, err := cps.Acquire(t.Context(), "projection", "owner-"+string(rune('a'+i)), longTTL)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				winners = append(winners, l)
			case !errors.Is(err, feed.ErrLeaseHeld):
				failures = append(failures, err)
			}
		})
	}
	wg.Wait()
	require.NoError(t, errors.Join(failures...))
	require.Len(t, winners, 1, "exactly one consumer gets the lease")
}

func testCheckpointNames(t *testing.T, src feed.Source, _ events.Store) {
	cps := src.Checkpoints()
	for i, name := range metacharacterIDs {
		l, err := cps.Acquire(t.Context(), name, name, longTTL)
		require.NoError(t, err, "name %q", name)
		require.Equal(t, name, l.Name)
		pos := events.MakeToken(uint64(i+1), uint64(i+1))
		require.NoError(t, commit(t, cps, l, pos))
	}
	for i, name := range metacharacterIDs {
		requirePosition(t, cps, name, events.MakeToken(uint64(i+1), uint64(i+1)))
	}
}

func testWatchCheckpoints(t *testing.T, src feed.Source, _ events.Store) {
	w, ok := src.(feed.CheckpointWatcher)
	require.True(t, ok, "%T does not implement feed.CheckpointWatcher", src)
	type move struct {
		name string
		pos  events.Token
	}
	moves := make(chan move, 16)
	cancel := w.WatchCheckpoints(func(name string, pos events.Token) {
		select {
		case moves <- move{name, pos}:
		default: // fn must not block; the test only needs the first moves
		}
	})
	defer cancel()

	cps := src.Checkpoints()
	l, err := cps.Acquire(t.Context(), "projection", "owner-a", longTTL)
	require.NoError(t, err)
	pos := events.MakeToken(4, 2)
	require.NoError(t, commit(t, cps, l, pos))
	select {
	case m := <-moves:
		require.Equal(t, move{"projection", pos}, m)
	case <-time.After(waitFor):
		t.Fatal("WatchCheckpoints did not report the commit")
	}
}

// testLeaseArguments: both stores refuse, with feed.ErrInvalidLease and
// before touching storage, a lease or membership whose name, owner, group
// or member is empty, holds NUL or another control character or invalid
// UTF-8, or whose ttl is not positive; nothing is acquired.
func testLeaseArguments(t *testing.T, src feed.Source, _ events.Store) {
	ctx := t.Context()
	cps := src.Checkpoints()
	bad := map[string]struct {
		name, owner string
		ttl         time.Duration
	}{
		"empty name":           {"", "o", time.Second},
		"empty owner":          {"c", "", time.Second},
		"zero ttl":             {"c", "o", 0},
		"negative ttl":         {"c", "o", -time.Second},
		"NUL in name":          {"c\x00", "o", time.Second},
		"NUL in owner":         {"c", "o\x00", time.Second},
		"invalid UTF-8 name":   {"c\xff", "o", time.Second},
		"invalid UTF-8 owner":  {"c", "\xc3", time.Second},
		"newline in name":      {"c\n", "o", time.Second},
		"DEL in owner":         {"c", "o\x7f", time.Second},
		"SQL and a control ch": {"'; DROP TABLE checkpoints; --\x01", "o", time.Second},
	}
	// Bad input is reported as such even with a done context (PostgreSQL
	// judges it before any SQL runs, where the context would show).
	for _, done := range []bool{false, true} {
		ctx := ctx
		if done {
			ctx = canceledContext(t)
		}
		for what, a := range bad {
			_, err := cps.Acquire(ctx, a.name, a.owner, a.ttl)
			require.ErrorIs(t, err, feed.ErrInvalidLease, "Acquire: %s (done context: %v)", what, done)
			require.ErrorIs(t, cps.Renew(ctx, feed.Lease{Name: a.name, Owner: a.owner, Generation: 1}, a.ttl), feed.ErrInvalidLease, "Renew: %s (done context: %v)", what, done)
			_, err = cps.Heartbeat(ctx, a.name, a.owner, a.ttl)
			require.ErrorIs(t, err, feed.ErrInvalidLease, "Heartbeat: %s (done context: %v)", what, done)
		}
	}
	// SQL metacharacters alone are ordinary text.
	l, err := cps.Acquire(ctx, "'; DROP TABLE checkpoints; --", `o"\`, time.Minute)
	require.NoError(t, err)
	require.NoError(t, cps.Renew(ctx, l, time.Minute))
	require.NoError(t, cps.Release(ctx, l))
	insp, ok := src.(feed.Inspector)
	require.True(t, ok, "%T is no feed.Inspector", src)
	consumers, err := insp.Consumers(ctx)
	require.NoError(t, err)
	for _, c := range consumers {
		require.Equal(t, "'; DROP TABLE checkpoints; --", c.Name, "nothing else was acquired")
	}
}

// testTokensBeyondAStoreAreRefused: a token whose parts do not fit a
// bigint (forged, or corrupted on its way) is refused with
// events.ErrInvalidToken by every call that takes one, on both stores, and
// a unit committing a move to it writes nothing.
func testTokensBeyondAStoreAreRefused(t *testing.T, src feed.Source, s events.Store) {
	ctx := t.Context()
	res := mustAppend(t, s, "order-1", events.NoStream, placed("1", 1))
	for _, big := range []events.Token{events.MakeToken(1<<63, 0), events.MakeToken(0, 1<<63), events.MakeToken(^uint64(0), ^uint64(0))} {
		_, err := s.ReadAll(ctx, big, 10)
		require.ErrorIs(t, err, events.ErrInvalidToken, "ReadAll after %s", big)
		_, err = src.ReadFeed(ctx, big, feed.Filter{}, 10)
		require.ErrorIs(t, err, events.ErrInvalidToken, "ReadFeed after %s", big)
		require.ErrorIs(t, src.Rows().Put(ctx, "ns", "t", "k", []byte(`1`), big), events.ErrInvalidToken, "Rows.Put at %s", big)
		if insp, ok := src.(feed.Inspector); ok {
			_, err = insp.CountBetween(ctx, events.Token{}, big)
			require.ErrorIs(t, err, events.ErrInvalidToken, "CountBetween up to %s", big)
			_, err = insp.CountBetween(ctx, big, res.Token)
			require.ErrorIs(t, err, events.ErrInvalidToken, "CountBetween after %s (past upTo)", big)
			_, _, err = insp.OldestAfter(ctx, big)
			require.ErrorIs(t, err, events.ErrInvalidToken, "OldestAfter %s", big)
			// The token is judged before a done context too.
			done := canceledContext(t)
			_, err = insp.CountBetween(done, events.Token{}, big)
			require.ErrorIs(t, err, events.ErrInvalidToken, "CountBetween up to %s, done context", big)
			_, _, err = insp.OldestAfter(done, big)
			require.ErrorIs(t, err, events.ErrInvalidToken, "OldestAfter %s, done context", big)
		}
		cps := src.Checkpoints()
		l, err := cps.Acquire(ctx, "big", "owner", time.Minute)
		require.NoError(t, err)
		require.ErrorIs(t, cps.Advance(ctx, l, big), events.ErrInvalidToken, "Advance to %s", big)
		require.ErrorIs(t, cps.Advance(canceledContext(t), l, big), events.ErrInvalidToken, "Advance to %s, done context", big)
		u := begin(t, src)
		uctx := u.Context(ctx)
		require.NoError(t, u.Rows().Put(uctx, "ns", "t", "written", []byte(`1`), res.Token))
		require.ErrorIs(t, u.Commit(ctx, feed.Move{Lease: l, Position: big}), events.ErrInvalidToken, "Commit of a move to %s", big)
		_, found, err := src.Rows().Get(ctx, "ns", "t", "written", feed.LockNone)
		require.NoError(t, err)
		require.False(t, found, "the unit wrote nothing")
		pos, err := cps.Position(ctx, "big")
		require.NoError(t, err)
		require.True(t, pos.IsZero(), "the checkpoint did not move")
		require.NoError(t, cps.Release(ctx, l))
	}
}

// testConsumersNameOnlyLiveHolders: Consumers names a consumer's owner
// only while its lease runs. A lease that ran out, or was released, is
// held by nobody, so lag reports and `converge projections` must not name
// a process that may be long gone as the one holding it.
func testConsumersNameOnlyLiveHolders(t *testing.T, src feed.Source, _ events.Store) {
	ctx := t.Context()
	cps := src.Checkpoints()
	insp, ok := src.(feed.Inspector)
	require.True(t, ok, "%T is no feed.Inspector", src)
	owner := func(name string) (string, time.Time) {
		consumers, err := insp.Consumers(ctx)
		require.NoError(t, err)
		for _, c := range consumers {
			if c.Name == name {
				return c.Owner, c.LeaseUntil
			}
		}
		t.Fatalf("Consumers does not list %q", name)
		return "", time.Time{}
	}

	live, err := cps.Acquire(ctx, "live", "owner-live", longTTL)
	require.NoError(t, err)
	lapsing, err := cps.Acquire(ctx, "lapsing", "owner-lapsing", shortTTL)
	require.NoError(t, err)
	released, err := cps.Acquire(ctx, "released", "owner-released", longTTL)
	require.NoError(t, err)
	require.NotEmpty(t, lapsing.Owner)
	require.NoError(t, cps.Release(ctx, released))

	// The lease runs out by the store's clock (PostgreSQL's is the
	// server's).
	require.Eventually(t, func() bool {
		got, _ := owner("lapsing")
		return got == ""
	}, 10*time.Second, 10*time.Millisecond, "a lapsed lease still names its holder")
	_, until := owner("lapsing")
	require.False(t, until.IsZero(), "a lapsed lease keeps its end time")

	got, _ := owner("live")
	require.Equal(t, live.Owner, got, "a running lease names its holder")
	got, _ = owner("released")
	require.Empty(t, got, "a released lease names nobody")
}

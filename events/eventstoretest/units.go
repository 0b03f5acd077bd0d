package eventstoretest

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// begin starts a unit and rolls it back when the test ends (a no-op once
// it committed).
func begin(t *testing.T, src feed.Source) feed.Unit {
	t.Helper()
	u, err := src.Checkpoints().Begin(t.Context())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, u.Rollback(context.WithoutCancel(t.Context()))) })
	return u
}

func testUnitRollbackDiscardsAppends(t *testing.T, src feed.Source, s events.Store) {
	ctx := t.Context()
	u := begin(t, src)
	var ran bool
	u.AfterCommit(func() { ran = true })

	res, err := u.Append(ctx, "order-1", events.NoStream, placed("1", 10), placed("1", 20))
	require.NoError(t, err)
	require.Equal(t, int64(2), res.LastVersion)
	v, err := u.StreamVersion(ctx, "order-1")
	require.NoError(t, err)
	require.Equal(t, int64(2), v, "the unit sees its own appends")
	own, err := u.ReadStream(ctx, "order-1", 1, 0)
	require.NoError(t, err)
	require.Equal(t, res.EventIDs, ids(own))
	outside, err := s.ReadStream(ctx, "order-1", 1, 0)
	require.NoError(t, err)
	require.Empty(t, outside, "nothing is visible outside before the commit")

	require.NoError(t, u.Rollback(ctx)) // a Nack
	require.NoError(t, u.Rollback(ctx), "rolling back twice is harmless")
	require.False(t, ran, "AfterCommit hooks do not run on rollback")
	_, err = u.Append(ctx, "order-1", events.AnyVersion, placed("1", 30))
	require.ErrorIs(t, err, events.ErrUnitEnded)
	require.ErrorIs(t, u.Commit(ctx), events.ErrUnitEnded)

	// The stream is free again and as if nothing happened: the rolled-back
	// ids can be appended anew.
	v, err = s.StreamVersion(ctx, "order-1")
	require.NoError(t, err)
	require.Zero(t, v)
	again := mustAppend(t, s, "order-1", events.NoStream, events.Event{ID: res.EventIDs[0], Data: orderPlaced{OrderID: "1"}})
	all := awaitAll(t, s, 1)
	require.Equal(t, again.Token, all[0].Token)
}

func testUnitCommitMakesAppendsVisible(t *testing.T, src feed.Source, s events.Store) {
	ctx := t.Context()
	u := begin(t, src)
	res, err := u.Append(ctx, "order-1", events.NoStream, placed("1", 10), placed("1", 20))
	require.NoError(t, err)
	res2, err := u.Append(ctx, "customer-1", events.NoStream, placed("1", 30))
	require.NoError(t, err)

	var order []int
	var seen []events.Envelope
	u.AfterCommit(func() {
		order = append(order, 1)
		// Hand tokens to readers from here: the events are visible now.
		seen, err = s.ReadStream(context.WithoutCancel(ctx), "order-1", 1, 0)
	})
	u.AfterCommit(func() { order = append(order, 2) })
	require.NoError(t, u.Commit(ctx))
	require.Equal(t, []int{1, 2}, order, "AfterCommit hooks run in order, after the commit")
	require.NoError(t, err)
	require.Equal(t, res.EventIDs, ids(seen))

	all := awaitAll(t, s, 3)
	got := map[string]events.Token{}
	for _, env := range all {
		got[env.ID] = env.Token
	}
	for i, id := range res.EventIDs {
		require.Equal(t, res.Tokens[i], got[id], "the feed has the token the append returned")
	}
	require.Equal(t, res2.Token, got[res2.EventIDs[0]])
	require.ErrorIs(t, u.Commit(ctx), events.ErrUnitEnded, "a unit commits once")
}

// bumps folds counterBumped events into a count.
var bumps = events.Aggregate[int]{Apply: func(n int, ev any) (int, error) {
	if _, ok := ev.(counterBumped); !ok {
		return n, errors.New("not a counterBumped")
	}
	return n + 1, nil
}}

func bump(n int) ([]events.Event, error) {
	return []events.Event{{Data: counterBumped{N: n + 1}}}, nil
}

func testUpdateJoinsTheUnit(t *testing.T, src feed.Source, s events.Store) {
	ctx := t.Context()
	mustAppend(t, s, "counter-1", events.NoStream, events.Event{Data: counterBumped{N: 1}})

	u := begin(t, src)
	uctx := u.Context(ctx)
	got, ok := events.UnitFromContext(uctx)
	require.True(t, ok)
	require.Same(t, u, got)
	_, err := events.Update(uctx, s, bumps, "counter-1", nil, bump)
	require.NoError(t, err)
	_, err = events.Update(uctx, s, bumps, "counter-1", nil, bump)
	require.NoError(t, err, "the second Update loads through the unit and sees the first")
	n, _, err := events.Load(ctx, s, bumps, "counter-1")
	require.NoError(t, err)
	require.Equal(t, 1, n, "outside the unit nothing moved yet")
	require.NoError(t, u.Rollback(ctx))
	n, _, err = events.Load(ctx, s, bumps, "counter-1")
	require.NoError(t, err)
	require.Equal(t, 1, n, "rolled back with the unit")

	u = begin(t, src)
	_, err = events.Update(u.Context(ctx), s, bumps, "counter-1", nil, bump)
	require.NoError(t, err)
	require.NoError(t, u.Commit(ctx))
	n, v, err := events.Load(ctx, s, bumps, "counter-1")
	require.NoError(t, err)
	require.Equal(t, 2, n, "committed with the unit")
	require.Equal(t, int64(2), v)
}

// testAppenderWaitsForUnit: an append whose expectation the committed
// events meet (Exactly(0), on a stream only an open unit wrote to) would
// take the unit's version, so it waits for the unit and, once it
// committed, fails against what the unit left (see events.Unit;
// testAppendBesideOpenUnit checks the whole rule).
func testAppenderWaitsForUnit(t *testing.T, src feed.Source, s events.Store) {
	ctx := t.Context()
	u := begin(t, src)
	_, err := u.Append(ctx, "order-1", events.NoStream, placed("1", 1))
	require.NoError(t, err)

	type result struct {
		res events.AppendResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := s.Append(ctx, "order-1", events.Exactly(0), placed("1", 2))
		done <- result{res, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("an append to a stream an open unit appended to must wait for it, got %+v", r)
	case <-time.After(50 * time.Millisecond): // proving a wait needs a bound
	}
	require.NoError(t, u.Commit(ctx))
	r := <-done
	var wrong *events.WrongExpectedVersionError
	require.ErrorAs(t, r.err, &wrong, "the waiting append sees the unit's events once it commits")
	require.Equal(t, int64(1), wrong.Actual)
}

func testCommitWithStaleLeaseWritesNothing(t *testing.T, src feed.Source, s events.Store) {
	ctx := t.Context()
	cps := src.Checkpoints()
	old, err := cps.Acquire(ctx, "c", "owner-a", shortTTL)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := cps.Acquire(ctx, "c", "owner-b", longTTL)
		return err == nil
	}, waitFor, pollEvery, "owner-b takes over once the lease expired")

	u := begin(t, src)
	_, err = u.Append(ctx, "order-1", events.NoStream, placed("1", 1))
	require.NoError(t, err)
	require.NoError(t, u.Rows().Put(ctx, "ns", "t", "k", []byte(`1`), events.MakeToken(1, 1)))
	err = u.Commit(ctx, feed.Move{Lease: old, Position: events.MakeToken(5, 5)})
	require.ErrorIs(t, err, feed.ErrLeaseLost)

	v, err := s.StreamVersion(ctx, "order-1")
	require.NoError(t, err)
	require.Zero(t, v, "the append was rolled back with the refused commit")
	_, ok, err := src.Rows().Get(ctx, "ns", "t", "k", feed.LockNone)
	require.NoError(t, err)
	require.False(t, ok, "the row was rolled back with the refused commit")
	requirePosition(t, cps, "c", events.Token{})
	require.ErrorIs(t, cps.Advance(ctx, old, events.MakeToken(6, 6)), feed.ErrLeaseLost, "Advance is fenced too")
	requirePosition(t, cps, "c", events.Token{})
}

func testCommitSeveralMoves(t *testing.T, src feed.Source, _ events.Store) {
	ctx := t.Context()
	cps := src.Checkpoints()
	a, err := cps.Acquire(ctx, "a", "o", longTTL)
	require.NoError(t, err)
	b, err := cps.Acquire(ctx, "b", "o", longTTL)
	require.NoError(t, err)
	u := begin(t, src)
	require.NoError(t, u.Commit(ctx, feed.Move{Lease: a, Position: events.MakeToken(1, 2)}, feed.Move{Lease: b, Position: events.MakeToken(3, 4)}))
	requirePosition(t, cps, "a", events.MakeToken(1, 2))
	requirePosition(t, cps, "b", events.MakeToken(3, 4))

	u = begin(t, src)
	pos, err := u.Positions(ctx, "b", "unknown", "a")
	require.NoError(t, err)
	require.Equal(t, []events.Token{events.MakeToken(3, 4), {}, events.MakeToken(1, 2)}, pos, "in order, zero for unknown names")
	require.NoError(t, u.Commit(ctx), "a commit with no moves commits the writes alone")
}

// testHooksRunBeforeTheMoveIsAnnounced: a watcher of checkpoint moves (the
// consistency tracker, and through it every waiter) hears of a unit's move
// only after the unit's AfterCommit hooks ran, so a reader woken by the
// move finds what they did (a projection's OnUpdate calls) done.
func testHooksRunBeforeTheMoveIsAnnounced(t *testing.T, src feed.Source, _ events.Store) {
	ctx := t.Context()
	w, ok := src.(feed.CheckpointWatcher)
	require.True(t, ok, "%T does not implement feed.CheckpointWatcher", src)
	var (
		mu     sync.Mutex
		hooked int
		seen   []int // hooked, at each move heard
	)
	defer w.WatchCheckpoints(func(name string, _ events.Token) {
		mu.Lock()
		defer mu.Unlock()
		if name == "h" {
			seen = append(seen, hooked)
		}
	})()
	l, err := src.Checkpoints().Acquire(ctx, "h", "o", longTTL)
	require.NoError(t, err)
	for i := range 3 {
		u := begin(t, src)
		_, err := u.Append(ctx, "hooked-1", events.AnyVersion, placed("1", i))
		require.NoError(t, err)
		for range 2 {
			u.AfterCommit(func() {
				mu.Lock()
				defer mu.Unlock()
				hooked++
			})
		}
		require.NoError(t, u.Commit(ctx, feed.Move{Lease: l, Position: events.MakeToken(1, uint64(i+1))}))
	}
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []int{2, 4, 6}, seen, "each move is heard after its unit's hooks, and once")
}

func testAdvanceNeverMovesBack(t *testing.T, src feed.Source, _ events.Store) {
	ctx := t.Context()
	cps := src.Checkpoints()
	w, ok := src.(feed.CheckpointWatcher)
	require.True(t, ok, "%T does not implement feed.CheckpointWatcher", src)
	var (
		mu    sync.Mutex
		moves []events.Token
	)
	defer w.WatchCheckpoints(func(name string, pos events.Token) {
		mu.Lock()
		defer mu.Unlock()
		if name == "c" {
			moves = append(moves, pos)
		}
	})()
	l, err := cps.Acquire(ctx, "c", "o", longTTL)
	require.NoError(t, err)
	require.NoError(t, cps.Advance(ctx, l, events.MakeToken(5, 5)))
	requirePosition(t, cps, "c", events.MakeToken(5, 5))
	require.NoError(t, cps.Advance(ctx, l, events.MakeToken(3, 9)), "an older position is not an error")
	requirePosition(t, cps, "c", events.MakeToken(5, 5))
	require.NoError(t, cps.Advance(ctx, l, events.MakeToken(5, 5)), "nor the same one")
	require.NoError(t, cps.Advance(ctx, l, events.MakeToken(5, 6)))
	requirePosition(t, cps, "c", events.MakeToken(5, 6))
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []events.Token{events.MakeToken(5, 5), events.MakeToken(5, 6)}, moves,
		"watchers (the consistency tracker) hear of every move, and only of moves")
}

func testMembership(t *testing.T, src feed.Source, _ events.Store) {
	ctx := t.Context()
	cps := src.Checkpoints()
	got, err := cps.Heartbeat(ctx, "g", "m-2", longTTL)
	require.NoError(t, err)
	require.Equal(t, []string{"m-2"}, got)
	got, err = cps.Heartbeat(ctx, "g", "m-1", longTTL)
	require.NoError(t, err)
	require.Equal(t, []string{"m-1", "m-2"}, got, "sorted")
	got, err = cps.Heartbeat(ctx, "other", "m-9", longTTL)
	require.NoError(t, err)
	require.Equal(t, []string{"m-9"}, got, "groups are apart")

	_, err = cps.Heartbeat(ctx, "g", "m-3", shortTTL)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		got, err := cps.Heartbeat(ctx, "g", "m-1", longTTL)
		return err == nil && len(got) == 2
	}, waitFor, pollEvery, "a member that stops beating expires")

	require.NoError(t, cps.Leave(ctx, "g", "m-2"))
	require.NoError(t, cps.Leave(ctx, "g", "m-2"), "leaving twice is harmless")
	got, err = cps.Heartbeat(ctx, "g", "m-1", longTTL)
	require.NoError(t, err)
	require.Equal(t, []string{"m-1"}, got, "a member that left is gone at once")

	_, err = cps.Heartbeat(ctx, "", "m", longTTL)
	require.Error(t, err)
	_, err = cps.Heartbeat(ctx, "g", "m", 0)
	require.Error(t, err)
}

// A duplicate of a committed event is found before anything is written,
// so the unit goes on, on both stores. (One of an id another open unit
// holds aborts a PostgreSQL transaction; memory fails that unit too.)
func testDuplicateLeavesUnitUsable(t *testing.T, src feed.Source, s events.Store) {
	ctx := t.Context()
	ev := placed("1", 1)
	mustAppend(t, s, "order-1", events.NoStream, ev)
	u := begin(t, src)
	_, err := u.Append(ctx, "order-2", events.NoStream, placed("2", 1))
	require.NoError(t, err)
	_, err = u.Append(ctx, "order-3", events.NoStream, ev)
	require.ErrorIs(t, err, events.ErrDuplicateEvent)
	// The committed duplicate was found before anything was written: the
	// unit goes on (on PostgreSQL the transaction is not aborted).
	require.NoError(t, u.Commit(ctx))
	v, err := s.StreamVersion(ctx, "order-2")
	require.NoError(t, err)
	require.Equal(t, int64(1), v, "the unit's other append is stored")
	v, err = s.StreamVersion(ctx, "order-3")
	require.NoError(t, err)
	require.Zero(t, v, "the refused append wrote nothing")
}

// staleLease returns a lease on name that another owner has since taken
// over.
func staleLease(t *testing.T, cps feed.CheckpointStore, name string) feed.Lease {
	t.Helper()
	ctx := t.Context()
	old, err := cps.Acquire(ctx, name, "owner-a", shortTTL)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := cps.Acquire(ctx, name, "owner-b", longTTL)
		return err == nil
	}, waitFor, pollEvery, "owner-b takes over once the lease expired")
	return old
}

// A unit that only wrote rows has begun no transaction on PostgreSQL: its
// writes travel with the fenced moves in the commit's one batch, and a
// stale lease must undo them there, including a move the batch made
// before the stale one.
func testCommitRowsOnlyWithStaleLeaseWritesNothing(t *testing.T, src feed.Source, _ events.Store) {
	ctx := t.Context()
	cps := src.Checkpoints()
	outside := src.Rows()
	require.NoError(t, outside.Put(ctx, "ns", "t", "old", json.RawMessage(`1`), events.MakeToken(1, 1)))
	stale := staleLease(t, cps, "c")
	fresh, err := cps.Acquire(ctx, "a", "owner-a", longTTL)
	require.NoError(t, err)

	requireUnchanged := func(msg string) {
		t.Helper()
		rows, err := outside.List(ctx, "ns", "t", feed.RowQuery{})
		require.NoError(t, err)
		require.Equal(t, []string{"old"}, keys(rows), "%s: no row written, none deleted", msg)
		requirePosition(t, cps, "a", events.Token{})
		requirePosition(t, cps, "c", events.Token{})
	}

	for _, tc := range []struct {
		name  string
		moves []feed.Move
	}{
		{"the only move is stale", []feed.Move{{Lease: stale, Position: events.MakeToken(5, 5)}}},
		{"the second move is stale", []feed.Move{{Lease: fresh, Position: events.MakeToken(5, 5)}, {Lease: stale, Position: events.MakeToken(6, 6)}}},
		{"the first move is stale", []feed.Move{{Lease: stale, Position: events.MakeToken(5, 5)}, {Lease: fresh, Position: events.MakeToken(6, 6)}}},
	} {
		u := begin(t, src)
		in := u.Rows()
		require.NoError(t, in.Put(ctx, "ns", "t", "new", json.RawMessage(`2`), events.MakeToken(2, 2)), tc.name)
		require.NoError(t, in.Delete(ctx, "ns", "t", "old"), tc.name)
		_, ok, err := in.Get(ctx, "ns", "t", "new", feed.LockNone)
		require.NoError(t, err, tc.name)
		require.True(t, ok, "%s: the unit reads its own write", tc.name)
		require.ErrorIs(t, u.Commit(ctx, tc.moves...), feed.ErrLeaseLost, tc.name)
		requireUnchanged(tc.name)
		_, _, err = in.Get(ctx, "ns", "t", "new", feed.LockNone)
		require.ErrorIs(t, err, events.ErrUnitEnded, "%s: a refused commit ends the unit", tc.name)
	}

	// Moves alone, the second stale: the first does not move either.
	u := begin(t, src)
	require.ErrorIs(t, u.Commit(ctx, feed.Move{Lease: fresh, Position: events.MakeToken(5, 5)}, feed.Move{Lease: stale, Position: events.MakeToken(6, 6)}), feed.ErrLeaseLost)
	requireUnchanged("moves alone")

	// The fresh lease was not harmed by the refused commits.
	u = begin(t, src)
	require.NoError(t, u.Rows().Put(ctx, "ns", "t", "new", json.RawMessage(`3`), events.MakeToken(3, 3)))
	require.NoError(t, u.Commit(ctx, feed.Move{Lease: fresh, Position: events.MakeToken(7, 7)}))
	requirePosition(t, cps, "a", events.MakeToken(7, 7))
	rows, err := outside.List(ctx, "ns", "t", feed.RowQuery{})
	require.NoError(t, err)
	require.Equal(t, []string{"new", "old"}, keys(rows))
}

// rowHook wants orderPlaced events and writes rows in ns/t for each: a
// row of its own, an overwrite of "shared" and a delete of "kept". On an
// amount of 666 it fails after writing; on 667 it lists the table first,
// which on PostgreSQL sends its held writes into the transaction, and
// then fails.
type rowHook struct{ recordingHook }

func (rowHook) After(ctx context.Context, u feed.Unit, envs []events.Envelope) error {
	r := u.Rows()
	for _, env := range envs {
		var p orderPlaced
		if err := json.Unmarshal(env.Payload, &p); err != nil {
			return err
		}
		if err := r.Put(ctx, "ns", "t", "hook-"+env.ID, json.RawMessage(`"hook"`), env.Token); err != nil {
			return err
		}
		if err := r.Put(ctx, "ns", "t", "shared", json.RawMessage(`"hook"`), env.Token); err != nil {
			return err
		}
		if err := r.Delete(ctx, "ns", "t", "kept"); err != nil {
			return err
		}
		switch p.Amount {
		case 666:
			return errHook
		case 667:
			if _, err := r.List(ctx, "ns", "t", feed.RowQuery{}); err != nil {
				return err
			}
			return errHook
		}
	}
	return nil
}

// A failing append hook undoes its append and its own row writes, and
// only them: what the unit wrote before the append stays, also where the
// hook wrote the same rows.
func testAppendHookFailureKeepsEarlierRowWrites(t *testing.T, src feed.Source, s events.Store) {
	ctx := t.Context()
	hs, ok := src.(feed.HookedSource)
	require.True(t, ok, "%T does not implement feed.HookedSource", src)
	defer hs.AddAppendHook(rowHook{})()
	outside := src.Rows()
	require.NoError(t, outside.Put(ctx, "ns", "t", "kept", json.RawMessage(`"committed"`), events.MakeToken(1, 1)))

	values := func(r feed.Rows) map[string]string {
		t.Helper()
		rows, err := r.List(ctx, "ns", "t", feed.RowQuery{})
		require.NoError(t, err)
		out := map[string]string{}
		for _, row := range rows {
			var v string
			require.NoError(t, json.Unmarshal(row.Value, &v))
			out[row.Key] = v
		}
		return out
	}

	for _, amount := range []int{666, 667} {
		u := begin(t, src)
		in := u.Rows()
		require.NoError(t, in.Put(ctx, "ns", "t", "before", json.RawMessage(`"unit"`), events.MakeToken(2, 2)))
		require.NoError(t, in.Put(ctx, "ns", "t", "shared", json.RawMessage(`"unit"`), events.MakeToken(2, 2)))
		_, err := u.Append(ctx, "order-1", events.NoStream, placed("1", amount))
		require.ErrorIs(t, err, errHook, "amount %d", amount)
		want := map[string]string{"kept": "committed", "before": "unit", "shared": "unit"}
		require.Equal(t, want, values(in), "amount %d: the unit sees its writes from before the failed append, and none of the hook's", amount)
		row, ok, err := in.Get(ctx, "ns", "t", "shared", feed.LockNone)
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, events.MakeToken(2, 2), row.Token, "amount %d", amount)
		require.NoError(t, in.Put(ctx, "ns", "t", "after", json.RawMessage(`"unit"`), events.MakeToken(3, 3)), "the unit stays usable")
		require.NoError(t, u.Commit(ctx), "amount %d", amount)

		want["after"] = "unit"
		require.Equal(t, want, values(outside), "amount %d: the commit stores the unit's writes, not the failed hook's", amount)
		v, err := s.StreamVersion(ctx, "order-1")
		require.NoError(t, err)
		require.Zero(t, v, "amount %d: the failed append is undone", amount)
		for _, k := range []string{"before", "shared", "after"} {
			require.NoError(t, outside.Delete(ctx, "ns", "t", k))
		}
	}

	// A failed append followed by one that succeeds: the second hook's
	// writes commit with the unit's own.
	u := begin(t, src)
	in := u.Rows()
	require.NoError(t, in.Put(ctx, "ns", "t", "before", json.RawMessage(`"unit"`), events.MakeToken(2, 2)))
	_, err := u.Append(ctx, "order-1", events.NoStream, placed("1", 667))
	require.ErrorIs(t, err, errHook)
	res, err := u.Append(ctx, "order-1", events.NoStream, placed("1", 1))
	require.NoError(t, err)
	require.NoError(t, u.Commit(ctx))
	require.Equal(t, map[string]string{"before": "unit", "shared": "hook", "hook-" + res.EventIDs[0]: "hook"}, values(outside))
}

// testUnitReappendOfItsOwnEvents: a unit appending again events it
// appended itself (a handler retrying within its unit) gets their result,
// marked AlreadyStored, and writes nothing more; the same id with other
// content is a duplicate. The unit stays usable and commits each event
// once, on both stores (PostgreSQL's transaction sees its own rows).
func testUnitReappendOfItsOwnEvents(t *testing.T, src feed.Source, s events.Store) {
	ctx := t.Context()
	u := begin(t, src)
	ev, other := placed("1", 1), placed("2", 1)
	first, err := u.Append(ctx, "order-1", events.NoStream, ev, other)
	require.NoError(t, err)
	again, err := u.Append(ctx, "order-1", events.NoStream, ev, other)
	require.NoError(t, err, "a retry of the unit's own append")
	require.True(t, again.AlreadyStored)
	require.Equal(t, first.Tokens, again.Tokens)
	require.Equal(t, first.FirstVersion, again.FirstVersion)
	changed := ev
	changed.Data = orderPlaced{OrderID: "1", Amount: 99}
	_, err = u.Append(ctx, "order-1", events.AnyVersion, changed)
	require.ErrorIs(t, err, events.ErrDuplicateEvent, "the same id with other content")
	require.NoError(t, u.Commit(ctx))
	got, err := s.ReadStream(ctx, "order-1", 0, 0)
	require.NoError(t, err)
	require.Equal(t, []string{ev.ID, other.ID}, ids(got), "each event once")
}

// testUnitReadStreamNegativeVersion: a unit's ReadStream refuses a
// negative fromVersion as the store's does.
func testUnitReadStreamNegativeVersion(t *testing.T, src feed.Source, s events.Store) {
	mustAppend(t, s, "order-1", events.NoStream, placed("o", 1))
	u := begin(t, src)
	defer func() { _ = u.Rollback(t.Context()) }()
	for _, from := range []int64{-1, -5, -1 << 63} {
		_, err := u.ReadStream(t.Context(), "order-1", from, 0)
		require.ErrorIs(t, err, events.ErrInvalidEvent, "fromVersion %d", from)
	}
}

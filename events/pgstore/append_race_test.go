package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestAppendYieldsToAConcurrentAppend holds an uncommitted append to a
// stream and starts a second one behind it, over random sizes, versions,
// expectations and outcomes. The second waits for the first to end (unless
// its expectation fails at once on what is committed), then
// lands whole after it (or where it would have been, if the first rolled
// back), or reports the conflict its expectation makes; inside a
// transaction it never aborts it. Nothing is half-written.
func TestAppendYieldsToAConcurrentAppend(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	ctx := t.Context()
	st := openStore(t, db)
	// The holder is this store or one playing a process of the previous
	// release, which takes no lock in a transaction: an append queued on
	// the lock still races that one at the unique index.
	old := openStore(t, db)
	pgstore.SetUnqueuedInTx(old)

	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 0))
	for round := range 32 {
		msg := fmt.Sprintf("seed %d, round %d", seed, round)
		stream := fmt.Sprintf("order-race%d", round)
		before := r.IntN(3)
		if before > 0 {
			_, err := st.Append(ctx, stream, events.NoStream, rawEvents(before)...)
			require.NoError(t, err, msg)
		}
		held, waiting := 1+r.IntN(4), 1+r.IntN(4)
		commit, inTx, holderLocks := r.IntN(2) == 0, r.IntN(2) == 0, r.IntN(2) == 0
		expected := []events.ExpectedVersion{events.AnyVersion, events.StreamExists, events.Exactly(int64(before)), events.NoStream}[r.IntN(4)]
		if before == 0 && expected == events.Exactly(0) {
			expected = events.NoStream
		}
		msg += fmt.Sprintf(": %d events, then %d held (commit %v, locked %v), then %d with %s (in a transaction %v)", before, held, commit, holderLocks, waiting, expected, inTx)

		holder, err := db.Pool.Begin(ctx)
		require.NoError(t, err, msg)
		// A failed check must not leave the holder open: the schema's
		// clean-up, and every test of the server, would wait for it.
		defer func() { _ = holder.Rollback(context.WithoutCancel(ctx)) }()
		holdWith := old
		if holderLocks {
			holdWith = st
		}
		_, err = holdWith.AppendTx(ctx, holder, stream, events.AnyVersion, rawEvents(held)...)
		require.NoError(t, err, msg)

		done := startAppend(ctx, db, st, stream, expected, rawEvents(waiting), inTx)
		// An append whose expectation fails on what is committed answers
		// at once, before the holder ends, also in a transaction, which
		// queues on the stream's lock only when its expectation fits (see
		// events.Unit); one that fits waits for the holder.
		if !fits(expected, before) {
			got := <-done
			require.NoError(t, got.usable, "%s: the waiter's transaction stays usable", msg)
			var wrong *events.WrongExpectedVersionError
			require.ErrorAs(t, got.err, &wrong, msg)
			require.Equal(t, int64(before), wrong.Actual, msg)
			require.NoError(t, holder.Rollback(ctx), msg)
			continue
		}
		awaitLockWaiter(t, db, stream)
		if commit {
			require.NoError(t, holder.Commit(ctx), msg)
		} else {
			require.NoError(t, holder.Rollback(ctx), msg)
		}
		got := <-done
		require.NoError(t, got.usable, "%s: the waiter's transaction stays usable", msg)

		head := before
		if commit {
			head += held
		}
		if !fits(expected, head) {
			var wrong *events.WrongExpectedVersionError
			require.ErrorAs(t, got.err, &wrong, msg)
			require.Equal(t, int64(head), wrong.Actual, msg)
			v, err := st.StreamVersion(ctx, stream)
			require.NoError(t, err, msg)
			require.Equal(t, int64(head), v, "%s: the refused append wrote nothing", msg)
			continue
		}
		require.NoError(t, got.err, msg)
		require.Equal(t, int64(head+1), got.res.FirstVersion, msg)
		require.Equal(t, int64(head+waiting), got.res.LastVersion, msg)
		requireStream(t, st, stream, int64(head+waiting), got.res)
		requireTokensFollowVersions(t, st, stream)
	}
}

// TestAppendTxManyWritersOneStream has writers append batches of random
// size to one stream, each in a transaction that does more work after the
// append and commits: every transaction commits, every batch lands whole
// and contiguous, and the stream's tokens follow its versions.
func TestAppendTxManyWritersOneStream(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{MaxConns: 10})
	ctx := t.Context()
	st := openStore(t, db)
	_, err := db.Pool.Exec(ctx, "CREATE TABLE outbox (n int)")
	require.NoError(t, err)

	const writers, appends, stream = 8, 15, "order-crowded"
	var (
		mu      sync.Mutex
		results []events.AppendResult
		wg      sync.WaitGroup
		errs    = make([]error, writers)
	)
	for w := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range appends {
				evs := rawEvents(1 + r.IntN(3))
				var res events.AppendResult
				err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
					var err error
					if res, err = st.AppendTx(ctx, tx, stream, events.AnyVersion, evs...); err != nil {
						return err
					}
					_, err = tx.Exec(ctx, "INSERT INTO outbox VALUES ($1)", i)
					return err
				})
				if err != nil {
					errs[w] = fmt.Errorf("writer %d, append %d: %w", w, i, err)
					return
				}
				mu.Lock()
				results = append(results, res)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	total := 0
	for _, res := range results {
		total += len(res.EventIDs)
	}
	for _, res := range results {
		requireStream(t, st, stream, int64(total), res)
	}
	requireTokensFollowVersions(t, st, stream)
	var outbox int
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT count(*) FROM outbox").Scan(&outbox))
	require.Equal(t, writers*appends, outbox, "every transaction committed")
}

// TestAppendThatKeepsLosingReportsUnavailable lets appends lose the race
// for the next version only once: AppendTx then reports ErrUnavailable
// with nothing written and the transaction usable, and Append, which
// retries unavailability, lands after the winner.
func TestAppendThatKeepsLosingReportsUnavailable(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	ctx := t.Context()
	st := openStore(t, db)
	pgstore.SetMaxLostRaces(st, 0)

	// An append in a transaction queues on the stream's lock, which
	// AppendTx's holder here takes too, so it can only lose to an append
	// that took no lock: one of a process of the previous release.
	old := openStore(t, db)
	pgstore.SetUnqueuedInTx(old)
	for _, inTx := range []bool{true, false} {
		// A stream of its own: the lost race makes a stream contended,
		// and appends to that queue rather than race (see
		// TestContendedStreamQueues).
		stream := fmt.Sprintf("order-loser%v", inTx)
		_, err := st.Append(ctx, stream, events.NoStream, rawEvent(1))
		require.NoError(t, err)
		holder, err := db.Pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = holder.Rollback(context.WithoutCancel(ctx)) }()
		_, err = old.AppendTx(ctx, holder, stream, events.AnyVersion, rawEvent(2))
		require.NoError(t, err)
		before, err := st.StreamVersion(ctx, stream)
		require.NoError(t, err)

		done := startAppend(ctx, db, st, stream, events.AnyVersion, []events.Event{rawEvent(3)}, inTx)
		awaitLockWaiter(t, db, stream)
		require.NoError(t, holder.Commit(ctx))
		got := <-done
		if inTx {
			require.ErrorIs(t, got.err, events.ErrUnavailable)
			require.NoError(t, got.usable, "the transaction stays usable")
			v, err := st.StreamVersion(ctx, stream)
			require.NoError(t, err)
			require.Equal(t, before+1, v, "only the winner's event was written")
			continue
		}
		require.NoError(t, got.err, "Append retries unavailability")
		require.Equal(t, before+2, got.res.FirstVersion)
	}
}

// TestContendedStreamQueues: an Append to a stream no append lost a race
// on takes no lock, and once one lost a race, appends to the stream, by
// Append and in a transaction, queue on the stream's advisory lock (here
// held by another session) instead of racing, and land when it is free.
// (In a transaction they queue always: see
// TestTransactionAppendsAgainToAStreamThatTurnedContended.)
func TestContendedStreamQueues(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	ctx := t.Context()
	st := openStore(t, db)
	const stream = "order-contended"

	// holdLock takes the stream's lock in a transaction of its own and
	// returns its backend pid and the transaction.
	holdLock := func() (uint32, pgx.Tx) {
		tx, err := db.Pool.Begin(ctx)
		require.NoError(t, err)
		t.Cleanup(func() { _ = tx.Rollback(context.WithoutCancel(ctx)) })
		var pid uint32
		require.NoError(t, tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid))
		_, err = tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", db.Schema+"."+stream)
		require.NoError(t, err)
		return pid, tx
	}

	_, lock := holdLock()
	_, err := st.Append(ctx, stream, events.NoStream, rawEvent(1))
	require.NoError(t, err, "a stream that is not contended takes no lock")
	require.NoError(t, lock.Rollback(ctx))

	// Lose a race: hold version 2, start an Append behind it, commit.
	holder, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = holder.Rollback(context.WithoutCancel(ctx)) }()
	_, err = st.AppendTx(ctx, holder, stream, events.AnyVersion, rawEvent(2))
	require.NoError(t, err)
	lost := make(chan error, 1)
	go func() {
		_, err := st.Append(ctx, stream, events.AnyVersion, rawEvent(3))
		lost <- err
	}()
	awaitLockWaiter(t, db, stream)
	require.NoError(t, holder.Commit(ctx))
	require.NoError(t, <-lost)

	for _, inTx := range []bool{false, true} {
		pid, lock := holdLock()
		done := startAppend(ctx, db, st, stream, events.AnyVersion, []events.Event{rawEvent(4)}, inTx)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			var queued bool
			require.NoError(c, db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
WHERE wait_event = 'advisory' AND $1::int = ANY(pg_blocking_pids(pid)))`, int64(pid)).Scan(&queued))
			assert.True(c, queued, "nothing queued behind backend %d", pid)
		}, 10*time.Second, 5*time.Millisecond, "the append (in a transaction %v) queues on the stream's lock", inTx)
		require.NoError(t, lock.Rollback(ctx))
		got := <-done
		require.NoError(t, got.err)
		require.NoError(t, got.usable)
	}
	v, err := st.StreamVersion(ctx, stream)
	require.NoError(t, err)
	require.Equal(t, int64(5), v)
	requireTokensFollowVersions(t, st, stream)
}

// appendOutcome is what startAppend's append came to: its result and
// error, and, in a transaction, whether the transaction was still usable
// after it (and committed, when the append succeeded).
type appendOutcome struct {
	res         events.AppendResult
	err, usable error
}

// startAppend appends evs in a goroutine, by Append or by AppendTx in a
// transaction of its own, and delivers the outcome.
func startAppend(ctx context.Context, db *pgtest.DB, st *pgstore.Store, stream string, expected events.ExpectedVersion, evs []events.Event, inTx bool) <-chan appendOutcome {
	done := make(chan appendOutcome, 1)
	go func() {
		if !inTx {
			res, err := st.Append(ctx, stream, expected, evs...)
			done <- appendOutcome{res: res, err: err}
			return
		}
		tx, err := db.Pool.Begin(ctx)
		if err != nil {
			done <- appendOutcome{err: err}
			return
		}
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		res, err := st.AppendTx(ctx, tx, stream, expected, evs...)
		_, usable := tx.Exec(ctx, "SELECT 1")
		if err == nil && usable == nil {
			usable = tx.Commit(ctx)
		}
		done <- appendOutcome{res, err, usable}
	}()
	return done
}

// fits reports whether an append expecting expected may go to a stream at
// version head.
func fits(expected events.ExpectedVersion, head int) bool {
	return expected == events.AnyVersion ||
		(expected == events.StreamExists && head > 0) ||
		expected == events.Exactly(int64(head)) ||
		(expected == events.NoStream && head == 0)
}

// openStore opens a store on db's schema, closed when the test ends.
func openStore(t *testing.T, db *pgtest.DB) *pgstore.Store {
	t.Helper()
	// Listening, because only a listening store remembers stream heads,
	// the path most of these tests are about.
	st, err := pgstore.New(t.Context(), db.Pool, &pgstore.Config{Schema: db.Schema})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func rawEvents(n int) []events.Event {
	evs := make([]events.Event, n)
	for i := range evs {
		evs[i] = rawEvent(i)
	}
	return evs
}

// requireTokensFollowVersions checks that a stream's events are in the
// global order in version order.
func requireTokensFollowVersions(t *testing.T, st *pgstore.Store, stream string) {
	t.Helper()
	got, err := st.ReadStream(t.Context(), stream, 1, 0)
	require.NoError(t, err)
	for i := 1; i < len(got); i++ {
		require.Equal(t, got[i-1].Version+1, got[i].Version)
		require.True(t, got[i-1].Token.Before(got[i].Token), "version %d's token must follow version %d's", got[i].Version, got[i-1].Version)
	}
}

package pgstore_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

// An Append skips reading the stream's head when its store remembers it
// from its own last append there. Whatever else writes the streams
// meanwhile (another store on the schema, a transaction that commits or
// rolls back), every append must land where the stream really ends, or
// fail its expectation with the true version: random operations, checked
// against a model of each stream's length.
func TestRememberedHeadsFollowEveryWriter(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{MaxConns: 8})
	a, b := openStore(t, db), openStore(t, db)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	ctx := t.Context()

	streams := []string{"heads-a", "heads-b", "heads-c"}
	length := map[string]int{}
	expectations := func(head int) []events.ExpectedVersion {
		return []events.ExpectedVersion{
			events.AnyVersion, events.StreamExists, events.NoStream,
			events.Exactly(int64(head)), events.Exactly(int64(head + 1)), events.Exactly(int64(max(head-1, 0))),
		}
	}
	for op := range 300 {
		stream := streams[rng.IntN(len(streams))]
		head := length[stream]
		opts := expectations(head)
		expected := opts[rng.IntN(len(opts))]
		n := 1 + rng.IntN(3)
		evs := rawEvents(n)
		st := a
		if rng.IntN(3) == 0 {
			st = b
		}
		what := fmt.Sprintf("op %d: %d events to %s at %d expecting %d", op, n, stream, head, int64(expected))
		var res events.AppendResult
		var err error
		commit := true
		switch rng.IntN(4) {
		case 0:
			tx, berr := db.Pool.Begin(ctx)
			require.NoError(t, berr)
			res, err = st.AppendTx(ctx, tx, stream, expected, evs...)
			commit = rng.IntN(2) == 0
			if commit && err == nil {
				require.NoError(t, tx.Commit(ctx), what)
			} else {
				require.NoError(t, tx.Rollback(ctx), what)
			}
			what += fmt.Sprintf(" in a transaction (commit %v)", commit)
		default:
			res, err = st.Append(ctx, stream, expected, evs...)
		}
		if !fits(expected, head) {
			var wrong *events.WrongExpectedVersionError
			require.ErrorAs(t, err, &wrong, what)
			require.Equal(t, int64(head), wrong.Actual, what)
			continue
		}
		require.NoError(t, err, what)
		require.Equal(t, int64(head+1), res.FirstVersion, what)
		require.Equal(t, int64(head+n), res.LastVersion, what)
		if commit {
			length[stream] = head + n
		}
	}
	for _, stream := range streams {
		got, err := a.ReadStream(ctx, stream, 1, 0)
		require.NoError(t, err)
		require.Len(t, got, length[stream], stream)
		requireTokensFollowVersions(t, a, stream)
	}
}

// Appends of one store racing for one stream: each guesses the head it
// remembers, all but one find the version taken, and they go on the usual
// way. None fails, none is lost, and the versions have no gap.
func TestRememberedHeadsUnderContention(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{MaxConns: 16})
	st := openStore(t, db)
	other := openStore(t, db)
	ctx := t.Context()
	const writers, each = 8, 25
	errs := make(chan error, writers+1)
	for w := range writers {
		go func() {
			for i := range each {
				if _, err := st.Append(ctx, "heads-race", events.AnyVersion, rawEvent(w*each+i)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	go func() {
		for i := range each {
			if _, err := other.Append(ctx, "heads-race", events.AnyVersion, rawEvent(1000+i)); err != nil {
				errs <- err
				return
			}
		}
		errs <- nil
	}()
	for range writers + 1 {
		err := <-errs
		if errors.Is(err, events.ErrUnavailable) {
			// Losing the race 64 times in a row is reported, not hidden.
			continue
		}
		require.NoError(t, err)
	}
	got, err := st.ReadStream(ctx, "heads-race", 1, 0)
	require.NoError(t, err)
	require.NotEmpty(t, got)
	requireTokensFollowVersions(t, st, "heads-race")
}

// What a store remembers: its own committed appends, not a caller's
// transaction's, and nothing while another writer was found at the head.
func TestRememberedHeadIsTheLastCommittedAppend(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{MaxConns: 4})
	a, b := openStore(t, db), openStore(t, db)
	ctx := t.Context()
	res, err := a.Append(ctx, "remember-1", events.NoStream, rawEvents(2)...)
	require.NoError(t, err)
	v, sk, ok := pgstore.RememberedHead(a, "remember-1")
	require.True(t, ok)
	require.Equal(t, res.LastVersion, v)
	require.Equal(t, int64(res.Token.Major()), sk) //nolint:gosec // a transaction id
	res, err = a.Append(ctx, "remember-1", events.AnyVersion, rawEvent(3))
	require.NoError(t, err)
	v, _, _ = pgstore.RememberedHead(a, "remember-1")
	require.Equal(t, int64(3), v, "the second append, which guessed, is remembered too")
	require.Equal(t, int64(3), res.LastVersion)

	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	_, err = a.AppendTx(ctx, tx, "remember-1", events.AnyVersion, rawEvent(4))
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))
	v, _, _ = pgstore.RememberedHead(a, "remember-1")
	require.Equal(t, int64(3), v, "a transaction's append may roll back: not remembered")

	_, err = b.Append(ctx, "remember-1", events.AnyVersion, rawEvent(5))
	require.NoError(t, err)
	res, err = a.Append(ctx, "remember-1", events.AnyVersion, rawEvent(6))
	require.NoError(t, err)
	require.Equal(t, int64(5), res.LastVersion)
	require.True(t, pgstore.Contended(a, "remember-1"), "a stream written elsewhere is appended to the usual way for a while")
	v, _, _ = pgstore.RememberedHead(a, "remember-1")
	require.Equal(t, int64(5), v, "the usual way's append is remembered")
}

// A store that does not listen cannot tell that it lost the server (its
// pool reconnects quietly after a restart or a failover), so it remembers
// no heads and every append reads the stream's head.
func TestStoreWithoutListenRemembersNoHeads(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	st, err := pgstore.New(t.Context(), db.Pool, &pgstore.Config{Schema: db.Schema, DisableListen: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	for i := range 3 {
		res, err := st.Append(t.Context(), "quiet-1", events.AnyVersion, rawEvent(i))
		require.NoError(t, err)
		require.Equal(t, int64(i+1), res.LastVersion)
		_, _, ok := pgstore.RememberedHead(st, "quiet-1")
		require.False(t, ok, "append %d left a remembered head", i+1)
	}
}

package pgstore_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestContendedAppendBesideOpenUnit checks that an append to a contended
// stream (one that queues on the stream's advisory lock) follows the rule
// the shared suite checks on streams that are not (AppendBesideOpenUnit):
// its expectation is judged on the committed events, and when they do not
// meet it, it fails at once with the committed version, even when the
// open unit that appended to the stream holds the stream's lock and will
// leave the stream where the append expects it; only an append they meet
// waits for the unit, and is judged again on what it left. Over random
// committed lengths, expectations, appenders (Append, AppendTx, a unit's
// Append), endings, and with the stream turned contended before the
// unit's first append (the unit takes the lock) or after it (it takes
// none).
func TestContendedAppendBesideOpenUnit(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	st := openStore(t, db)
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 0))
	round := 0
	for _, lockedByUnit := range []bool{true, false} {
		for expectation := range 6 {
			contendedAppendBesideOpenUnit(t, db, st, rng, lockedByUnit, expectation,
				fmt.Sprintf("order-hotbeside%d", round), fmt.Sprintf("round %d, seed %d", round, seed))
			round++
		}
	}
}

// contendedAppendBesideOpenUnit is one round of
// TestContendedAppendBesideOpenUnit, on stream, with the expectation of
// index expectation.
func contendedAppendBesideOpenUnit(t *testing.T, db *pgtest.DB, st *pgstore.Store, rng *rand.Rand, lockedByUnit bool, expectation int, stream, round string) {
	t.Helper()
	ctx := t.Context()
	before, held := rng.IntN(3), 1+rng.IntN(2)
	if before > 0 {
		_, err := st.Append(ctx, stream, events.NoStream, rawEvents(before)...)
		require.NoError(t, err)
	}
	u, err := st.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = u.Rollback(context.WithoutCancel(ctx)) }()
	if lockedByUnit {
		pgstore.MarkContended(st, stream)
	}
	_, err = u.Append(ctx, stream, events.AnyVersion, rawEvents(held)...)
	require.NoError(t, err)
	tx, err := pgstore.TxFromContext(u.Context(ctx))
	require.NoError(t, err)
	unitPID := backendPID(t, tx)
	require.Equal(t, map[bool]int{true: 1, false: 0}[lockedByUnit], advisoryLocks(t, db, unitPID), "the unit holds the stream's lock only if it was contended")

	after := before + held
	expectations := []events.ExpectedVersion{
		events.AnyVersion, events.StreamExists, events.NoStream,
		events.Exactly(int64(before)), events.Exactly(int64(before + 1)), events.Exactly(int64(after)),
	}
	expected := expectations[expectation]
	kind := rng.IntN(3)
	what := []string{"Append", "AppendTx", "a unit's Append"}[kind]
	commit := rng.IntN(2) == 0
	msg := fmt.Sprintf("%s with %s, %d events committed and %d in the open unit, which holds the lock: %v (%s)", what, expected, before, held, lockedByUnit, round)
	start := func(ctx context.Context) <-chan appendOutcome {
		pgstore.MarkContended(st, stream)
		if kind < 2 {
			return startAppend(ctx, db, st, stream, expected, rawEvents(1), kind == 1)
		}
		done := make(chan appendOutcome, 1)
		go func() {
			other, err := st.Checkpoints().Begin(ctx)
			if err != nil {
				done <- appendOutcome{err: err}
				return
			}
			defer func() { _ = other.Rollback(context.WithoutCancel(ctx)) }()
			res, err := other.Append(ctx, stream, expected, rawEvents(1)...)
			done <- appendOutcome{res: res, err: err}
		}()
		return done
	}

	if !expected.Satisfied(int64(before)) {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second) // bounds a wrong wait
		got := <-start(actx)
		cancel()
		requireWrongVersionError(t, got.err, int64(before), msg)
		return
	}
	done := start(ctx)
	awaitBlockedBy(t, db, unitPID, msg)
	left := before
	if commit {
		require.NoError(t, u.Commit(ctx), msg)
		left = after
	} else {
		require.NoError(t, u.Rollback(ctx), msg)
	}
	got := <-done
	if !expected.Satisfied(int64(left)) {
		requireWrongVersionError(t, got.err, int64(left), msg)
		return
	}
	require.NoError(t, got.err, "judged again once the unit ended (committed: %v), %s", commit, msg)
	require.NoError(t, got.usable, msg)
	require.Equal(t, int64(left+1), got.res.FirstVersion, msg)
}

// requireWrongVersionError checks err is a *WrongExpectedVersionError
// reporting actual.
func requireWrongVersionError(t *testing.T, err error, actual int64, msg string) {
	t.Helper()
	var wrong *events.WrongExpectedVersionError
	require.ErrorAs(t, err, &wrong, msg)
	require.Equal(t, actual, wrong.Actual, msg)
}

package eventstoretest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// testUnitUsableAfterACallFailsOnADoneContext: a call that fails on a
// done context before reaching the store leaves the unit as it was, even
// as the unit's first use (on PostgreSQL, before its transaction began):
// the row writes it held and the calls after it commit. A unit that
// accepted later calls and then refused to commit them would lose them.
func testUnitUsableAfterACallFailsOnADoneContext(t *testing.T, src feed.Source, s events.Store) {
	ctx := t.Context()
	u := begin(t, src)
	held := rand.IntN(5)
	for i := range held {
		require.NoError(t, u.Rows().Put(ctx, "ns", "held", fmt.Sprint(i), json.RawMessage(fmt.Sprint(i)), events.Token{}))
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	_, err := u.Append(done, "order-1", events.NoStream, placed("1", 1))
	require.ErrorIs(t, err, context.Canceled)

	_, err = u.Append(ctx, "order-1", events.NoStream, placed("1", 2))
	require.NoError(t, err, "the unit goes on after a call that never reached the store")
	require.NoError(t, u.Commit(ctx), "what the unit accepted commits")
	v, err := s.StreamVersion(ctx, "order-1")
	require.NoError(t, err)
	require.Equal(t, int64(1), v)
	got, err := src.Rows().List(ctx, "ns", "held", feed.RowQuery{})
	require.NoError(t, err)
	require.Len(t, got, held, "the row writes held before the failed call commit too")
}

// testUnitsLockingRowsCrosswiseConflict: two units each lock a row, then
// each the other's. PostgreSQL breaks the deadlock by aborting one of them;
// memory lets both go on and fails the second commit. Either way the
// loser's error is feed.ErrConflict (run the work again) and only the
// winner's writes are stored. The rows exist: PostgreSQL locks only rows
// that do (see feed.Rows.Get).
func testUnitsLockingRowsCrosswiseConflict(t *testing.T, src feed.Source, _ events.Store) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	keys := [2]string{"a", "b"}
	for _, k := range keys {
		require.NoError(t, src.Rows().Put(ctx, "ns", "cross", k, json.RawMessage(`-1`), events.Token{}))
	}
	var locked sync.WaitGroup
	locked.Add(2)
	errs := make([]error, 2)
	units := [2]feed.Unit{begin(t, src), begin(t, src)}
	var wg sync.WaitGroup
	for i, u := range units {
		wg.Go(func() {
			errs[i] = func() error {
				mine, theirs := keys[i], keys[1-i]
				_, _, err := u.Rows().Get(ctx, "ns", "cross", mine, feed.LockUpdate)
				locked.Done()
				if err != nil {
					return err
				}
				locked.Wait()
				if _, _, err := u.Rows().Get(ctx, "ns", "cross", theirs, feed.LockUpdate); err != nil {
					return err
				}
				for _, k := range keys {
					if err := u.Rows().Put(ctx, "ns", "cross", k, json.RawMessage(fmt.Sprint(i)), events.Token{}); err != nil {
						return err
					}
				}
				return u.Commit(ctx)
			}()
			if errs[i] != nil {
				_ = u.Rollback(context.WithoutCancel(ctx))
			}
		})
	}
	wg.Wait()
	winner := 0
	if errs[0] != nil {
		winner = 1
	}
	require.NoError(t, errs[winner], "one unit goes through")
	require.ErrorIs(t, errs[1-winner], feed.ErrConflict, "the other is told to run again")
	for _, k := range keys {
		row, ok, err := src.Rows().Get(ctx, "ns", "cross", k, feed.LockNone)
		require.NoError(t, err)
		require.True(t, ok)
		require.JSONEq(t, fmt.Sprint(winner), string(row.Value), "only the winner's writes are stored")
	}
}

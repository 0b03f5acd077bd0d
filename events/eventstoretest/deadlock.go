package eventstoretest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// testUnitsAppendingCrosswiseDoNotWaitForEver: two units each append to a
// stream, then each to the other's: each would wait for the other for
// ever. The store breaks the cycle (PostgreSQL's deadlock detection, or
// memory's) by failing one of the two appends with feed.ErrConflict; once
// that unit rolls back, the other's append goes through and commits.
func testUnitsAppendingCrosswiseDoNotWaitForEver(t *testing.T, src feed.Source, s events.Store) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	a, b := begin(t, src), begin(t, src)
	_, err := a.Append(ctx, "cross-a", events.NoStream, placed("a", 1))
	require.NoError(t, err)
	_, err = b.Append(ctx, "cross-b", events.NoStream, placed("b", 1))
	require.NoError(t, err)

	type result struct {
		u   feed.Unit
		err error
	}
	done := make(chan result, 2)
	go func() {
		_, err := a.Append(ctx, "cross-b", events.AnyVersion, placed("a", 2))
		if err != nil {
			_ = a.Rollback(context.WithoutCancel(ctx))
		}
		done <- result{a, err}
	}()
	go func() {
		_, err := b.Append(ctx, "cross-a", events.AnyVersion, placed("b", 2))
		if err != nil {
			_ = b.Rollback(context.WithoutCancel(ctx))
		}
		done <- result{b, err}
	}()
	one, other := <-done, <-done
	if one.err == nil {
		one, other = other, one
	}
	require.Error(t, one.err, "one of the appends fails: the cycle is broken")
	require.ErrorIs(t, one.err, feed.ErrConflict, "the cycle was broken, and the unit told to run again")
	require.NoError(t, other.err, "the other append goes through once the failed unit rolled back")
	require.NoError(t, other.u.Commit(ctx))
	for _, stream := range []string{"cross-a", "cross-b"} {
		v, err := s.StreamVersion(ctx, stream)
		require.NoError(t, err)
		require.Positive(t, v, stream)
	}
}

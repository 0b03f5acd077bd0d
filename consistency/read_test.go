package consistency_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
)

func TestRead(t *testing.T) {
	t.Parallel()

	t.Run("Fresh", func(t *testing.T) {
		t.Parallel()
		tr := setup(t, nil)
		tr.Advance("orders", tok(4))
		res, err := consistency.Read(context.Background(), tr, tok(4), []string{"orders"},
			func(context.Context) (string, error) { return "order 1", nil })
		require.NoError(t, err)
		require.Equal(t, "order 1", res.Value)
		require.False(t, res.Stale)
		require.Equal(t, tok(4), res.Checkpoint)
		require.Zero(t, res.Behind)
	})

	t.Run("StaleStillQueries", func(t *testing.T) {
		t.Parallel()
		tr := setup(t, &consistency.TrackerConfig{Counter: fakeCounter{}, MaxTimeout: 20 * time.Millisecond})
		tr.Advance("orders", tok(2))
		res, err := consistency.Read(context.Background(), tr, tok(4), []string{"orders"},
			func(context.Context) (int, error) { return 42, nil })
		require.NoError(t, err)
		require.Equal(t, 42, res.Value, "stale data is returned, flagged")
		require.True(t, res.Stale)
		require.Equal(t, tok(2), res.Checkpoint)
		require.Equal(t, int64(2), res.Behind)
	})

	t.Run("StaleQueryGetsItsOwnBudget", func(t *testing.T) {
		t.Parallel()
		tr := setup(t, &consistency.TrackerConfig{QueryTimeout: time.Minute})
		type key struct{}
		ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), key{}, "v"), 20*time.Millisecond)
		defer cancel()
		res, err := consistency.Read(ctx, tr, tok(4), []string{"orders"},
			func(qctx context.Context) (time.Duration, error) {
				require.NoError(t, qctx.Err(), "the query must not start with an expired context")
				require.Equal(t, "v", qctx.Value(key{}), "the query keeps the caller's values")
				dl, ok := qctx.Deadline()
				require.True(t, ok, "the query is bounded")
				return time.Until(dl), nil
			})
		require.NoError(t, err)
		require.True(t, res.Stale)
		require.Greater(t, res.Value, 30*time.Second, "the query gets QueryTimeout, not the wait's leftover")
		require.LessOrEqual(t, res.Value, time.Minute)
	})

	t.Run("CancelReachesQuery", func(t *testing.T) {
		t.Parallel()
		tr := setup(t, &consistency.TrackerConfig{QueryTimeout: time.Minute})
		tr.Advance("orders", tok(4))
		// The deadline leaves less than QueryTimeout, so the query runs
		// under its own budget; cancelling still reaches it.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := consistency.Read(ctx, tr, tok(4), []string{"orders"},
			func(qctx context.Context) (int, error) {
				cancel() // the caller gives up while the query runs
				<-qctx.Done()
				return 0, qctx.Err()
			})
		require.ErrorIs(t, err, context.Canceled, "cancelling the caller's context cancels the query")
	})

	t.Run("QueryError", func(t *testing.T) {
		t.Parallel()
		tr := setup(t, nil)
		res, err := consistency.Read(context.Background(), tr, events.Token{}, []string{"orders"},
			func(context.Context) (int, error) { return 0, errBoom })
		require.ErrorIs(t, err, errBoom)
		require.False(t, res.Stale)
	})

	t.Run("WaitErrorSkipsQuery", func(t *testing.T) {
		t.Parallel()
		tr := setup(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := consistency.Read(ctx, tr, tok(3), []string{"orders"},
			func(context.Context) (int, error) { t.Error("query ran after a cancelled wait"); return 0, nil })
		require.ErrorIs(t, err, context.Canceled)

		_, err = consistency.Read(context.Background(), tr, tok(3), nil,
			func(context.Context) (int, error) { t.Error("query ran without names"); return 0, nil })
		require.ErrorIs(t, err, consistency.ErrNoNames)
	})
}

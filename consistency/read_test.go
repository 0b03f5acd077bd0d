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

package consistency_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
)

func TestNewTracker(t *testing.T) {
	t.Parallel()

	t.Run("NilConfigIsUsable", func(t *testing.T) {
		t.Parallel()
		tr, err := consistency.NewTracker(nil)
		require.NoError(t, err)
		require.NoError(t, tr.Stop(context.Background()))
	})

	t.Run("InvalidFieldsAreNamed", func(t *testing.T) {
		t.Parallel()
		for field, cfg := range map[string]consistency.TrackerConfig{
			"FallbackInterval": {FallbackInterval: -time.Second},
			"MaxTimeout":       {MaxTimeout: -time.Second},
			"DefaultTimeout":   {DefaultTimeout: -time.Second},
			"MaxWaiters":       {MaxWaiters: -1},
			"CountTimeout":     {CountTimeout: -time.Second},
		} {
			_, err := consistency.NewTracker(&cfg)
			require.ErrorContains(t, err, field)
		}
	})

	t.Run("DefaultTimeoutAboveMaxTimeout", func(t *testing.T) {
		t.Parallel()
		_, err := consistency.NewTracker(&consistency.TrackerConfig{DefaultTimeout: time.Second, MaxTimeout: time.Millisecond})
		require.ErrorContains(t, err, "exceeds MaxTimeout")
	})

	t.Run("ShortMaxTimeoutLowersDefaultTimeout", func(t *testing.T) {
		t.Parallel()
		tr := setup(t, &consistency.TrackerConfig{MaxTimeout: 20 * time.Millisecond})
		st, err := tr.Wait(context.Background(), tok(1), "orders")
		require.NoError(t, err)
		require.True(t, st.Stale)
		require.Less(t, st.Waited, consistency.DefaultTimeout, "MaxTimeout lowered the default")
	})
}

func TestTracker_Lifecycle(t *testing.T) {
	t.Parallel()

	t.Run("StartTwice", func(t *testing.T) {
		t.Parallel()
		tr := setup(t, nil)
		require.ErrorIs(t, tr.Start(context.Background()), consistency.ErrAlreadyStarted)
	})

	t.Run("StartAfterStop", func(t *testing.T) {
		t.Parallel()
		tr, err := consistency.NewTracker(nil)
		require.NoError(t, err)
		require.NoError(t, tr.Stop(context.Background()))
		require.ErrorIs(t, tr.Start(context.Background()), consistency.ErrStopped)
	})

	t.Run("StopIsIdempotentAndClosesStopped", func(t *testing.T) {
		t.Parallel()
		w := &fakeWatcher{}
		tr, err := consistency.NewTracker(&consistency.TrackerConfig{Watcher: w, Positions: newFakePositions()})
		require.NoError(t, err)
		require.NoError(t, tr.Start(context.Background()))
		select {
		case <-tr.Stopped():
			t.Fatal("Stopped closed before Stop")
		default:
		}
		require.NoError(t, tr.Stop(context.Background()))
		require.NoError(t, tr.Stop(context.Background()))
		<-tr.Stopped()
		require.True(t, w.isCancelled(), "Stop must unsubscribe from the watcher")
	})

	t.Run("StopReleasesWaiters", func(t *testing.T) {
		t.Parallel()
		tr, err := consistency.NewTracker(&consistency.TrackerConfig{MaxTimeout: time.Minute})
		require.NoError(t, err)
		require.NoError(t, tr.Start(context.Background()))
		res := goWait(context.Background(), tr, tok(5), "orders")
		awaitParked(t, tr, func() bool { return tr.Waiting("orders") == 1 })
		require.NoError(t, tr.Stop(context.Background()))
		r := receive(t, res)
		require.NoError(t, r.err)
		require.True(t, r.st.Stale)
		require.Equal(t, consistency.ReasonStopped, r.st.Reason)

		st, err := tr.Wait(context.Background(), tok(5), "orders")
		require.NoError(t, err)
		require.Equal(t, consistency.ReasonStopped, st.Reason, "a wait after Stop returns at once")
	})
}

func TestTracker_Advance(t *testing.T) {
	t.Parallel()

	t.Run("NeverMovesBackwards", func(t *testing.T) {
		t.Parallel()
		tr := setup(t, nil)
		_, ok := tr.Position("orders")
		require.False(t, ok)

		tr.Advance("orders", tok(10))
		tr.Advance("orders", tok(4))
		pos, ok := tr.Position("orders")
		require.True(t, ok)
		require.Equal(t, tok(10), pos)

		tr.Advance("orders", tok(11))
		pos, _ = tr.Position("orders")
		require.Equal(t, tok(11), pos)
	})

	t.Run("ResetMovesBackwards", func(t *testing.T) {
		t.Parallel()
		tr := setup(t, nil)
		tr.Advance("orders", tok(10))
		tr.Reset("orders", tok(2))
		pos, ok := tr.Position("orders")
		require.True(t, ok)
		require.Equal(t, tok(2), pos)

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		st, err := tr.Wait(ctx, tok(5), "orders")
		require.NoError(t, err)
		require.True(t, st.Stale, "after a reset, reads are stale until the projection catches up again")
	})

	t.Run("WatcherPushesMoves", func(t *testing.T) {
		t.Parallel()
		w := &fakeWatcher{}
		tr := setup(t, &consistency.TrackerConfig{Watcher: w, MaxTimeout: time.Minute})
		res := goWait(context.Background(), tr, tok(3), "orders")
		awaitParked(t, tr, func() bool { return tr.Waiting("orders") == 1 })
		w.push("orders", tok(3))
		r := receive(t, res)
		require.NoError(t, r.err)
		require.False(t, r.st.Stale)
		require.Equal(t, tok(3), r.st.Checkpoint)
	})
}

package projections_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// TestResetBetweenASwitchAndItsAdvanceStaysStale: a switch commits, then
// tells OnUpdate, then advances the Tracker to the switch's position. A
// Runner.Reset that commits in between resets the Tracker, and the
// switch's late Advance undid it: waits for the head came back fresh
// while every event after the reset token was still to be applied again.
// (OnUpdate blocks here only to hold the window open.)
func TestResetBetweenASwitchAndItsAdvanceStaysStale(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := b.setup(t)
			var hold atomic.Bool
			p := projections.New("reset_race", nil)
			projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Deposited) error {
				if hold.Load() {
					return errors.New("held: the replay makes no progress")
				}
				return addToAccount(ctx, tx, e.Account, e.Amount)
			})
			switched, release := make(chan struct{}), make(chan struct{})
			once := sync.OnceFunc(func() { close(switched); <-release })
			r := f.start(t, projections.RunnerConfig{
				Projections: []*projections.Projection{p},
				MaxAttempts: 1 << 30,
				OnUpdate: func(u projections.Update) {
					if u.Kind == projections.UpdateReplaced {
						once()
					}
				},
			})
			first := f.append(t, "acct-a", Deposited{"a", 1})
			for range 3 {
				f.append(t, "acct-a", Deposited{"a", 1})
			}
			head := f.head(t)
			f.waitFor(t, head, "reset_race")

			rebuilt := make(chan error, 1)
			go func() { rebuilt <- r.Rebuild(ctx, "reset_race") }()
			await(t, switched, "the switch")
			hold.Store(true)
			require.NoError(t, r.Reset(ctx, "reset_race", first.Token))
			close(release)
			require.NoError(t, <-rebuilt)

			wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			st, err := f.tracker.Wait(wctx, head, "reset_race")
			require.NoError(t, err)
			require.True(t, st.Stale, "a wait for the head is fresh while the events after the reset token are applied again")
		})
	}
}

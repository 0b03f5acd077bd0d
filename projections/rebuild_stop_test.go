package projections_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// TestRebuildReturnsWhenStopped: Stop ends a Rebuild waiting with a
// context that never ends: it returns ErrStopped instead of blocking for
// ever on a rebuild whose processor Stop closed. The rebuild stays
// recorded, as the error says: a runner started later carries it on.
func TestRebuildReturnsWhenStopped(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			var block atomic.Bool
			block.Store(true)
			entered := newOnce()
			// The rebuild's handler blocks until Stop ends its context.
			proj := func() *projections.Projection {
				p := projections.New("stopped_rebuild", nil)
				projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Deposited) error {
					if tx.Generation() > 1 && block.Load() {
						entered.fire()
						<-ctx.Done()
						return ctx.Err()
					}
					return tx.Table("totals").Put(ctx, e.Account, e.Amount)
				})
				return p
			}
			r := f.newRunner(t, projections.RunnerConfig{Projections: []*projections.Projection{proj()}})
			require.NoError(t, r.Start(context.Background()))
			f.append(t, "acct-a", Deposited{"a", 1})
			f.waitHead(t, "stopped_rebuild")

			rebuilt := make(chan error, 1)
			go func() { rebuilt <- r.Rebuild(context.Background(), "stopped_rebuild") }()
			await(t, entered.C(), "the rebuild's handler")
			stop(t, r)
			select {
			case err := <-rebuilt:
				require.ErrorIs(t, err, projections.ErrStopped)
				require.ErrorContains(t, err, "generation 2 is still recorded")
			case <-time.After(waitTimeout):
				t.Fatal("Rebuild still waits after Stop returned")
			}

			block.Store(false)
			next := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{proj()}})
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			require.NoError(t, next.AwaitRebuild(ctx, "stopped_rebuild"), "a runner started later carries the rebuild on")
			st, err := next.Status(ctx, "stopped_rebuild")
			require.NoError(t, err)
			require.Equal(t, 2, st.Generation)
		})
	}
}

package projections_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/projections"
)

// TestRequestRebuildRefusedWhileARebuildRuns: RequestRebuild (what
// `converge projections rebuild` calls) fails with ErrRebuildInProgress
// while a rebuild of the projection is under way, and records no request;
// once the rebuild is done, a request is taken again.
func TestRequestRebuildRefusedWhileARebuildRuns(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			const name = "busy_balances"
			// Hold the rebuild's processor before it delivers anything (not
			// inside a unit, which would hold the feed back on PostgreSQL).
			gate := make(chan struct{})
			building := newOnce()
			r := f.newRunner(t, projections.RunnerConfig{Projections: []*projections.Projection{balances(name, nil)}})
			projections.SetRebuildHook(r, func(ctx context.Context, processor string) {
				if processor == name+"@rebuild-2" {
					building.fire()
					select {
					case <-gate:
					case <-ctx.Done():
					}
				}
			})
			require.NoError(t, r.Start(ctx))
			t.Cleanup(func() { stop(t, r) })
			for i := range 4 {
				f.append(t, "acct-"+accountName(i), Deposited{accountName(i), i + 1})
			}
			f.waitHead(t, name)

			done := make(chan error, 1)
			go func() { done <- r.Rebuild(ctx, name) }()
			await(t, building.C(), "the rebuild to start")
			opened := false
			t.Cleanup(func() {
				if !opened {
					close(gate)
				}
			})

			_, err := projections.RequestRebuild(ctx, f.source, name)
			require.ErrorIs(t, err, projections.ErrRebuildInProgress)
			require.ErrorContains(t, err, "building generation 2")
			_, ok, err := projections.ReadRequest(ctx, f.source.Rows(), name)
			require.NoError(t, err)
			require.False(t, ok, "the refused request is not recorded")

			close(gate)
			opened = true
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(waitTimeout):
				t.Fatal("Rebuild did not return")
			}
			st, err := r.Status(ctx, name)
			require.NoError(t, err)
			require.Equal(t, 2, st.Generation)
			require.Nil(t, st.Rebuild)

			q, err := projections.RequestRebuild(ctx, f.source, name)
			require.NoError(t, err, "once the rebuild is done, a request is taken")
			require.Equal(t, projections.RequestPending, q.State)
			got := awaitRequest(t, f, name, q.ID)
			require.Equal(t, projections.RequestDone, got.State, got.Error)
			require.Equal(t, 3, got.Generation)
		})
	}
}

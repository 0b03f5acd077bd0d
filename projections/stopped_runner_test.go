package projections_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// TestStoppedRunnerRefusesOperations: ErrStopped is what a Runner's
// Rebuild, Reset and Resume return once Stop has been called, and they
// change nothing then (a Reset does not move the checkpoint back);
// ErrNotRunning is Rebuild's answer before Start only.
func TestStoppedRunnerRefusesOperations(t *testing.T) {
	t.Parallel()
	f := newMemFixture(t)
	ctx := context.Background()
	r := f.newRunner(t, projections.RunnerConfig{Projections: []*projections.Projection{balances("stopped_ops", nil)}})
	require.ErrorIs(t, r.Rebuild(ctx, "stopped_ops"), projections.ErrNotRunning)
	require.NoError(t, r.Start(ctx))
	res := f.append(t, "acct-a", Deposited{"a", 3})
	f.waitFor(t, res.Token, "stopped_ops")
	require.NoError(t, r.Stop(ctx))

	err := r.Rebuild(ctx, "stopped_ops")
	require.ErrorIs(t, err, projections.ErrStopped)
	require.NotErrorIs(t, err, projections.ErrNotRunning)
	require.ErrorIs(t, r.Reset(ctx, "stopped_ops", events.Token{}), projections.ErrStopped)
	require.ErrorIs(t, r.Resume(ctx, "stopped_ops"), projections.ErrStopped)

	pos, err := f.source.Checkpoints().Position(ctx, "stopped_ops")
	require.NoError(t, err)
	require.Equal(t, res.Token, pos, "the refused reset moved the checkpoint")
	st, err := r.Status(ctx, "stopped_ops")
	require.NoError(t, err)
	require.Equal(t, 1, st.Generation, "the refused rebuild began a generation")
	require.Nil(t, st.Rebuild)

	// Stopped before it ever started: stopped all the same.
	never := f.newRunner(t, projections.RunnerConfig{Projections: []*projections.Projection{balances("stopped_ops", nil)}})
	require.NoError(t, never.Stop(ctx))
	require.ErrorIs(t, never.Rebuild(ctx, "stopped_ops"), projections.ErrStopped)
	require.ErrorIs(t, never.Reset(ctx, "stopped_ops", events.Token{}), projections.ErrStopped)
	require.ErrorIs(t, never.Resume(ctx, "stopped_ops"), projections.ErrStopped)
}

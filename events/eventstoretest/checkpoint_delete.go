package eventstoretest

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// testDeleteCheckpoints: a checkpoint whose lease is free can be
// forgotten; one whose lease is held is left alone, since its holder would
// create it again at its next commit.
func testDeleteCheckpoints(t *testing.T, src feed.Source, s events.Store) {
	ctx := t.Context()
	d, ok := src.Checkpoints().(feed.CheckpointDeleter)
	require.True(t, ok, "%T does not implement feed.CheckpointDeleter", src.Checkpoints())
	cps := src.Checkpoints()
	res := mustAppend(t, s, "order-1", events.NoStream, placed("1", 1))
	held, err := cps.Acquire(ctx, "held", "owner-1", longTTL)
	require.NoError(t, err)
	require.NoError(t, commit(t, cps, held, res.Token))
	free, err := cps.Acquire(ctx, "free", "owner-1", longTTL)
	require.NoError(t, err)
	require.NoError(t, commit(t, cps, free, res.Token))
	require.NoError(t, cps.Release(ctx, free))

	n, err := d.DeleteCheckpoints(ctx, "held", "free", "never-there")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	requirePosition(t, cps, "held", res.Token)
	requirePosition(t, cps, "free", events.Token{})
	require.ErrorIs(t, commit(t, cps, free, res.Token), feed.ErrLeaseLost, "the forgotten lease cannot commit")

	require.NoError(t, cps.Release(ctx, held))
	n, err = d.DeleteCheckpoints(ctx, "held")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	requirePosition(t, cps, "held", events.Token{})
}

// countingHook counts its After calls.
type countingHook struct {
	recordingHook
	after *atomic.Int32
}

func (h countingHook) After(ctx context.Context, u feed.Unit, envs []events.Envelope) error {
	h.after.Add(1)
	return h.recordingHook.After(ctx, u, envs)
}

// testAppendHookAfterSkipsStoredRetry: a retry of an append that is
// already stored writes nothing, so the hooks, which ran in the unit that
// stored it, do not run After again.
func testAppendHookAfterSkipsStoredRetry(t *testing.T, src feed.Source, s events.Store) {
	hs, ok := src.(feed.HookedSource)
	require.True(t, ok, "%T does not implement feed.HookedSource", src)
	var after atomic.Int32
	defer hs.AddAppendHook(countingHook{after: &after})()
	ev := placed("1", 1)
	first := mustAppend(t, s, "order-1", events.NoStream, ev)
	require.EqualValues(t, 1, after.Load())
	again := mustAppend(t, s, "order-1", events.NoStream, ev)
	require.True(t, again.AlreadyStored)
	require.Equal(t, first.Tokens, again.Tokens)
	require.EqualValues(t, 1, after.Load(), "After ran once, with the append that stored the events")
}

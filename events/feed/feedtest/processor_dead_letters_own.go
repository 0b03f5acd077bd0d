package feedtest

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// testProcessorDeadLettersOfItsOwn: a processor's dead letters and replay
// requests are found among a page's worth (feed.DefaultRowLimit) of
// another processor's whose name starts with its own (which sort before
// its unsplit keys), and of a category subscriber's ("name/topic"): the
// listing holds exactly its own, a limit counts its own, and a replay of
// its dead letter is carried out.
func testProcessorDeadLettersOfItsOwn(t *testing.T, m mode, s events.Store, src feed.Source) {
	ctx := t.Context()
	name := uniqueName("own")
	// Others' records, written in one unit: more of the longer name's
	// than a page holds.
	u, err := src.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	uctx := u.Context(ctx)
	for i := range feed.DefaultRowLimit + 50 {
		cp := name + "-archive"
		if i%50 == 0 {
			cp = name + "/topic"
		}
		key := cp + "/" + uuid.NewString()
		dl, err := json.Marshal(feed.DeadLetterRecord{Checkpoint: cp, Reason: "not ours", Attempts: 1, At: time.Now().UTC()})
		require.NoError(t, err)
		require.NoError(t, u.Rows().Put(uctx, feed.RuntimeNamespace, feed.DeadLettersTable, key, dl, events.Token{}))
		rq, err := json.Marshal(feed.ReplayRequest{Key: key, Checkpoint: cp, RequestedAt: time.Now().UTC(), Failed: "not ours", FailedAt: time.Now().UTC()})
		require.NoError(t, err)
		require.NoError(t, u.Rows().Put(uctx, feed.RuntimeNamespace, feed.ReplaysTable, key, rq, events.Token{}))
	}
	require.NoError(t, u.Commit(ctx))

	cfg := procConfig(name, 1)
	cfg.Categories = []string{name}
	cfg.MaxAttempts = 1
	cfg.OnFailure = feed.DeadLetter
	cfg.ReplayCheckInterval = 10 * time.Millisecond
	envs := appendSpread(t, s, name, 2, 4)
	bad := envs[2]
	var broken atomic.Bool
	broken.Store(true)
	p := startProcessor(t, m, src, cfg, failingOn(name, bad, &broken))
	awaitPosition(t, p.p, envs[3].Token)

	dls, err := p.p.DeadLetters(ctx, 0)
	require.NoError(t, err)
	require.Len(t, dls, 1, "exactly its own dead letter")
	require.Equal(t, bad.ID, dls[0].Event.ID)
	require.Equal(t, name, dls[0].Checkpoint)
	one, err := feed.ListDeadLetters(ctx, src.Rows(), name, 1)
	require.NoError(t, err)
	require.Len(t, one, 1, "the limit counts its own")

	broken.Store(false)
	key := fmt.Sprintf("%s/%s", name, bad.ID)
	_, err = feed.RequestReplay(ctx, src.Rows(), key)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, pending, err := feed.ReadReplay(ctx, src.Rows(), key)
		return err == nil && !pending
	}, waitTimeout, 5*time.Millisecond, "the replay was never carried out")
	requireAppliedOnce(t, src, name, envs)
	dls, err = p.p.DeadLetters(ctx, 0)
	require.NoError(t, err)
	require.Empty(t, dls)
}

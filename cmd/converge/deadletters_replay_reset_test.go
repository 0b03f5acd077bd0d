package main

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

// TestDeadLettersReplayWaitSaysReplayedOnlyWhenItWas: `dead-letters
// replay --wait` reports "replayed" only when the dead letter went with
// its request. A projection reset deletes the dead letters of the events
// it applies again together with their replay requests, and an event that
// fails again is a dead letter again under the same ID: the request is
// gone, yet nothing was replayed. The test makes those row changes itself,
// as the reset and the failing handler do, with no application running,
// so no processor carries the request out first: then --wait says the
// event was dead-lettered again (exit status 1), and, while it is not (yet),
// that the reset dropped it and the replay is not confirmed (exit status 1).
func TestDeadLettersReplayWaitSaysReplayedOnlyWhenItWas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupOps(t)
	const name = "ops_reset_letters"
	lettered := make(chan projections.DeadLetter, 1)
	r := b.start(t, projections.RunnerConfig{
		Projections:  []*projections.Projection{b.projection(name)},
		MaxAttempts:  1,
		OnFailure:    projections.DeadLetterOnFailure,
		OnDeadLetter: func(dl projections.DeadLetter) { lettered <- dl },
	})
	first := b.deposit(t, "a", 1)
	poison := b.deposit(t, "poison", 2)
	select {
	case <-lettered:
	case <-time.After(15 * time.Second):
		t.Fatal("no dead letter")
	}
	stopRunner(t, r)
	id := name + "/" + poison.EventIDs[0]
	rows := b.store.Rows()

	// replay runs `dead-letters replay ID --wait` and, once its request is
	// recorded, change; it returns what the command printed and returned.
	replay := func(t *testing.T, change func()) (string, error) {
		t.Helper()
		var out string
		var err error
		finished := make(chan struct{})
		go func() {
			defer close(finished)
			out, err = b.cli(t, "dead-letters", "replay", id, "--wait", "--timeout", "30s")
		}()
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			q, ok, err := feed.ReadReplay(ctx, rows, id)
			require.NoError(c, err)
			assert.True(c, ok && q.Failed == "")
		}, 15*time.Second, 5*time.Millisecond, "the command records its request")
		change()
		select {
		case <-finished:
		case <-time.After(30 * time.Second):
			t.Fatal("`dead-letters replay --wait` did not end")
		}
		return out, err
	}
	deadLetter := func(t *testing.T) (feed.DeadLetterRecord, bool) {
		t.Helper()
		row, ok, err := rows.Get(ctx, feed.RuntimeNamespace, feed.DeadLettersTable, id, feed.LockNone)
		require.NoError(t, err)
		var rec feed.DeadLetterRecord
		if ok {
			require.NoError(t, json.Unmarshal(row.Value, &rec))
		}
		return rec, ok
	}

	// The reset dropped the request, and the event failed again: a new
	// dead letter under the same ID, the request gone.
	out, err := replay(t, func() {
		rec, ok := deadLetter(t)
		require.True(t, ok)
		rec.At, rec.Reason = time.Now().UTC(), "poison pill, again"
		v, err := json.Marshal(rec)
		require.NoError(t, err)
		require.NoError(t, rows.Put(ctx, feed.RuntimeNamespace, feed.DeadLettersTable, id, v, rec.Event.Token))
		require.NoError(t, rows.Delete(ctx, feed.RuntimeNamespace, feed.ReplaysTable, id))
	})
	require.ErrorContains(t, err, "dead-letters replay: 1 of 1 failed: "+id)
	require.Contains(t, out, id+": replay accepted")
	require.Contains(t, out, id+": not replayed: its request was dropped (by a projection reset, say) and the event was dead-lettered again at ")
	require.Contains(t, out, "poison pill, again")
	require.NotContains(t, out, id+": replayed")

	// A reset to the first event is taken, and drops the dead letter with
	// the request; the event is not dead-lettered again (yet).
	_, err = projections.RequestReset(ctx, b.store, name, first.Token)
	require.NoError(t, err)
	out, err = replay(t, func() {
		q, ok, err := projections.ReadRequest(ctx, rows, name)
		require.NoError(t, err)
		require.True(t, ok)
		q.State, q.Owner, q.UpdatedAt = projections.RequestRunning, "test", time.Now().UTC()
		v, err := json.Marshal(q)
		require.NoError(t, err)
		require.NoError(t, rows.Put(ctx, feed.RuntimeNamespace, projections.RequestsTable, name, v, events.Token{}))
		require.NoError(t, rows.Delete(ctx, feed.RuntimeNamespace, feed.DeadLettersTable, id))
		require.NoError(t, rows.Delete(ctx, feed.RuntimeNamespace, feed.ReplaysTable, id))
	})
	require.ErrorContains(t, err, "dead-letters replay: 1 of 1 not confirmed replayed (see above): "+id)
	require.Contains(t, out, id+": not confirmed replayed: the reset of projection "+name+" to "+first.Token.String()+" (running at ")
	require.NotContains(t, out, id+": replayed")
	_, ok := deadLetter(t)
	require.False(t, ok)
}

package feedtest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// testCloseWithMessageHeld: a handler holding a message may close its
// Subscriber: Close does not wait for the handler (which cannot answer
// before Close returns), yet releases the lease and closes the channel
// before it returns. The held message is given up: its later Ack commits
// nothing, not even the handler's writes, and the next holder delivers the
// event again. An Ack given before Close still commits.
func testCloseWithMessageHeld(t *testing.T, s events.Store, src feed.Source) {
	t.Helper()
	name := uniqueName("heldclose")
	checkpoint := feed.CheckpointName(name, "order")
	out := "audit-" + name
	first := appendTo(t, s, "order-1", 1)

	cm := newCommits()
	cfg := config(name, cm)
	sub, err := feed.NewSubscriber(src, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	ch := subscribe(t, sub, "order")
	held := receive(t, ch)
	require.Equal(t, first.EventIDs[0], held.UUID)

	// The handler writes through its unit, then closes the Subscriber.
	writeThrough(t, held, out)
	start := time.Now()
	require.NoError(t, sub.Close())
	took := time.Since(start)
	require.Less(t, took, cfg.LeaseTTL/2, "Close waited for the handler that called it")
	select {
	case _, ok := <-ch:
		require.False(t, ok, "Close must close the output channel before it returns")
	default:
		t.Fatal("Close returned before closing the output channel")
	}
	l, err := src.Checkpoints().Acquire(t.Context(), checkpoint, "another-process", time.Minute)
	require.NoError(t, err, "Close must release the lease of a consumer whose message is held")
	require.NoError(t, src.Checkpoints().Release(t.Context(), l))

	// The handler answers at last: its Ack is ignored, and the next holder
	// delivers the event again.
	require.True(t, held.Ack())
	cmNext := newCommits()
	next, err := feed.NewSubscriber(src, config(name, cmNext))
	require.NoError(t, err)
	t.Cleanup(func() { _ = next.Close() })
	again := receive(t, subscribe(t, next, "order"))
	require.Equal(t, first.EventIDs[0], again.UUID, "the given-up event must be delivered again")
	writeThrough(t, again, out)
	require.True(t, again.Ack())
	cmNext.await(t, checkpoint, first.Token)
	require.NoError(t, next.Close())
	require.Zero(t, cm.count(), "an Ack after Close must not commit")
	requireWrites(t, s, out, 1, "the given-up unit's write must not commit")

	// An Ack given before Close commits, even when Close comes before the
	// consumer has seen it.
	for round := range 5 {
		res := appendTo(t, s, "order-1", 2+round)
		cmR := newCommits()
		subR, err := feed.NewSubscriber(src, config(name, cmR))
		require.NoError(t, err)
		msg := receive(t, subscribe(t, subR, "order"))
		require.Equal(t, res.EventIDs[0], msg.UUID)
		writeThrough(t, msg, out)
		require.True(t, msg.Ack())
		require.NoError(t, subR.Close())
		pos, err := src.Checkpoints().Position(t.Context(), checkpoint)
		require.NoError(t, err)
		// Past the event, maybe: the consumer may have moved over the
		// handler's own write, outside its category, before Close.
		require.False(t, pos.Before(res.Token), "round %d: an Ack given before Close must commit (position %s, event at %s)", round, pos, res.Token)
		requireWrites(t, s, out, 2+round, "round %d: the Acked unit's write must commit", round)
	}
}

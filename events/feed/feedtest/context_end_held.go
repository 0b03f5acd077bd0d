package feedtest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// testContextEndGivesUpAHeldMessage: when the context given to Subscribe
// ends while a message is held (neither Acked nor Nacked), the
// subscription gives the message up at once, as Watermill subscribers do:
// the channel closes and the lease is released without waiting for the
// holder (who may never answer), and the event is delivered again by the
// next holder. The held message's later Ack commits nothing, so the
// event's effects commit once.
func testContextEndGivesUpAHeldMessage(t *testing.T, s events.Store, src feed.Source) {
	t.Helper()
	name := uniqueName("ctxheld")
	checkpoint := feed.CheckpointName(name, "order")
	out := "audit-" + name
	first := appendTo(t, s, "order-1", 1)

	cm := newCommits()
	cfg := config(name, cm)
	// Far past waitTimeout: a subscription that waited for the lease's
	// TTL before giving the message up fails the test instead of passing
	// late.
	cfg.LeaseTTL = time.Hour
	sub := newSubscriber(t, src, cfg)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch, err := sub.Subscribe(ctx, "order")
	require.NoError(t, err)
	held := receive(t, ch)
	// Whatever fails below, the holder answers in the end: a message given
	// up waits for its answer to roll its unit back.
	t.Cleanup(func() { held.Nack() })
	require.Equal(t, first.EventIDs[0], held.UUID)
	writeThrough(t, held, out)

	cancel()
	requireClosed(t, ch)
	select {
	case <-held.Context().Done():
	default:
		t.Fatal("ending the Subscribe context must cancel the held message's context")
	}
	l, err := src.Checkpoints().Acquire(t.Context(), checkpoint, "another-process", time.Minute)
	require.NoError(t, err, "the lease of a subscription whose context ended must be released")
	require.NoError(t, src.Checkpoints().Release(t.Context(), l))

	// The holder answers at last: too late, its unit never commits.
	require.True(t, held.Ack())
	cmNext := newCommits()
	next := newSubscriber(t, src, config(name, cmNext))
	again := receive(t, subscribe(t, next, "order"))
	require.Equal(t, first.EventIDs[0], again.UUID, "the given-up event must be delivered again")
	writeThrough(t, again, out)
	require.True(t, again.Ack())
	cmNext.await(t, checkpoint, first.Token)
	require.Zero(t, cm.count(), "an Ack after the Subscribe context ended must not commit")
	requireWrites(t, s, out, 1, "the given-up unit's write must not commit")
}

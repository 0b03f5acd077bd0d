package eventstoretest

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// testClosedSourceRefusesAndEndsSubscriptions: after Close every call
// fails with events.ErrClosed, and a subscription idle on the source ends
// (its channel closes, it renews its lease no more).
func testClosedSourceRefusesAndEndsSubscriptions(t *testing.T, src feed.Source, s events.Store) {
	ctx := t.Context()
	closer, ok := src.(io.Closer)
	require.True(t, ok, "%T has no Close", src)
	mustAppend(t, s, "order-1", events.NoStream, placed("1", 10))
	sub, err := feed.NewSubscriber(src, &feed.SubscriberConfig{ConsumerName: "closing", LeaseTTL: time.Minute})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	msgs, err := sub.Subscribe(ctx, feed.TopicAll)
	require.NoError(t, err)
	select {
	case msg := <-msgs:
		msg.Ack()
	case <-time.After(30 * time.Second):
		t.Fatal("the subscription delivered nothing")
	}
	l, err := src.Checkpoints().Acquire(ctx, "held", "owner", time.Minute)
	require.NoError(t, err)

	open, err := src.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = open.Rollback(context.WithoutCancel(ctx)) })
	require.NoError(t, closer.Close())
	deadline := time.After(30 * time.Second)
	for open := true; open; {
		select {
		case msg, more := <-msgs:
			if msg != nil {
				msg.Ack()
			}
			open = more
		case <-deadline:
			t.Fatal("the subscription outlived the source's Close")
		}
	}

	_, err = s.Append(ctx, "order-2", events.NoStream, placed("2", 10))
	require.ErrorIs(t, err, events.ErrClosed, "Append")
	// A unit begun before the Close fails the same way.
	_, err = open.ReadStream(ctx, "order-1", 1, 0)
	require.ErrorIs(t, err, events.ErrClosed, "unit ReadStream")
	_, err = open.StreamVersion(ctx, "order-1")
	require.ErrorIs(t, err, events.ErrClosed, "unit StreamVersion")
	_, err = open.Append(ctx, "order-2", events.NoStream, placed("2", 10))
	require.ErrorIs(t, err, events.ErrClosed, "unit Append")
	_, _, err = open.Rows().Get(ctx, "ns", "t", "k", feed.LockNone)
	require.ErrorIs(t, err, events.ErrClosed, "unit Rows.Get")
	_, err = open.Positions(ctx, "held")
	require.ErrorIs(t, err, events.ErrClosed, "unit Positions")
	_, err = s.ReadStream(ctx, "order-1", 1, 0)
	require.ErrorIs(t, err, events.ErrClosed, "ReadStream")
	_, err = s.StreamVersion(ctx, "order-1")
	require.ErrorIs(t, err, events.ErrClosed, "StreamVersion")
	_, err = s.ReadAll(ctx, events.Token{}, 0)
	require.ErrorIs(t, err, events.ErrClosed, "ReadAll")
	_, err = s.Head(ctx)
	require.ErrorIs(t, err, events.ErrClosed, "Head")
	_, err = src.ReadFeed(ctx, events.Token{}, feed.Filter{}, 0)
	require.ErrorIs(t, err, events.ErrClosed, "ReadFeed")
	cps := src.Checkpoints()
	_, err = cps.Acquire(ctx, "other", "owner", time.Minute)
	require.ErrorIs(t, err, events.ErrClosed, "Acquire")
	require.ErrorIs(t, cps.Renew(ctx, l, time.Minute), events.ErrClosed, "Renew")
	require.ErrorIs(t, cps.Advance(ctx, l, events.MakeToken(1, 1)), events.ErrClosed, "Advance")
	_, err = cps.Position(ctx, "held")
	require.ErrorIs(t, err, events.ErrClosed, "Position")
	_, err = cps.Heartbeat(ctx, "group", "member", time.Minute)
	require.ErrorIs(t, err, events.ErrClosed, "Heartbeat")
	_, err = cps.Begin(ctx)
	require.ErrorIs(t, err, events.ErrClosed, "Begin")
	_, _, err = src.Rows().Get(ctx, "ns", "t", "k", feed.LockNone)
	require.ErrorIs(t, err, events.ErrClosed, "Rows.Get")
	require.ErrorIs(t, src.Rows().Put(ctx, "ns", "t", "k", []byte(`1`), events.Token{}), events.ErrClosed, "Rows.Put")
	_, err = src.Rows().List(ctx, "ns", "t", feed.RowQuery{})
	require.ErrorIs(t, err, events.ErrClosed, "Rows.List")
	if insp, ok := src.(feed.Inspector); ok {
		_, err = insp.Consumers(ctx)
		require.ErrorIs(t, err, events.ErrClosed, "Consumers")
	}
	require.ErrorIs(t, cps.Release(ctx, l), events.ErrClosed, "Release")
}

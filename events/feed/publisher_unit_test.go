package feed_test

import (
	"context"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
)

// A message published with a context carrying a unit commits with the
// unit: rolled back, it was never published.
func TestPublisherAppendsThroughTheMessagesUnit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := memstore.New(nil)
	require.NoError(t, err)
	defer s.Close()
	pub, err := feed.NewPublisher(s, nil)
	require.NoError(t, err)

	publish := func(commit bool, uuid string) {
		u, err := s.Checkpoints().Begin(ctx)
		require.NoError(t, err)
		msg := message.NewMessage(uuid, []byte(`{}`))
		msg.SetContext(u.Context(events.ContextWithUnit(ctx, u)))
		require.NoError(t, pub.Publish("outbox-1", msg))
		if commit {
			require.NoError(t, u.Commit(ctx))
		} else {
			require.NoError(t, u.Rollback(ctx))
		}
	}
	publish(false, "a")
	v, err := s.StreamVersion(ctx, "outbox-1")
	require.NoError(t, err)
	require.Zero(t, v, "a rolled-back unit publishes nothing")
	publish(true, "b")
	v, err = s.StreamVersion(ctx, "outbox-1")
	require.NoError(t, err)
	require.Equal(t, int64(1), v)
}

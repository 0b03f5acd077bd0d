package converge_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events/memstore"
)

// TestStopIsBoundedByItsContext: Stop returns when its ctx ends, with the
// ctx's error, even while a handler on the client's router is still
// running. Watermill's Close waits for handlers up to the router's
// CloseTimeout (a minute here) and takes no context.
func TestStopIsBoundedByItsContext(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })

	pubsub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { _ = pubsub.Close() })
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: time.Minute}, watermill.NopLogger{})
	require.NoError(t, err)
	entered, release := make(chan struct{}), make(chan struct{})
	router.AddConsumerHandler("blocking", "work", pubsub, func(*message.Message) error {
		close(entered)
		<-release // ignores its context, as a handler stuck in a call may
		return nil
	})

	client, err := converge.NewClient(store, &converge.Config{Router: router, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.NoError(t, client.Start(ctx))
	require.NoError(t, pubsub.Publish("work", message.NewMessage(watermill.NewUUID(), nil)))
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the handler never ran")
	}

	stopCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- client.Stop(stopCtx) }()
	var stopErr error
	select {
	case stopErr = <-stopped:
	case <-time.After(20 * time.Second):
		close(release)
		t.Fatal("Stop outlived its 200ms context by 20s: it waited for the router's CloseTimeout")
	}
	require.ErrorIs(t, stopErr, context.DeadlineExceeded)
	require.ErrorContains(t, stopErr, "handlers still running")

	// Let the handler end: the router's close finishes behind Stop.
	close(release)
	require.Eventually(t, router.IsClosed, 30*time.Second, 5*time.Millisecond, "the router never closed after its handler returned")
}

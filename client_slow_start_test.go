package converge_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events/memstore"
)

// blockedSubscriber's Subscribe blocks, as a subscriber's does while its
// broker is unreachable, until the test releases it (then it subscribes
// to nothing) or, unless ignoresCtx, until its context ends: then it
// fails with the context's error when failsOnCtx, and otherwise ends the
// subscription (a closed channel), the two ways subscribers honour it.
type blockedSubscriber struct {
	failsOnCtx, ignoresCtx bool
	entered, release       chan struct{}
	releaseOnce            sync.Once
}

// free releases Subscribe; it may be called more than once.
func (s *blockedSubscriber) free() { s.releaseOnce.Do(func() { close(s.release) }) }

func (s *blockedSubscriber) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	close(s.entered)
	done := ctx.Done()
	if s.ignoresCtx {
		done = nil
	}
	select {
	case <-done:
		if s.failsOnCtx {
			return nil, ctx.Err()
		}
	case <-s.release:
	}
	ch := make(chan *message.Message)
	close(ch)
	return ch, nil
}

func (*blockedSubscriber) Close() error { return nil }

// blockedClient returns a client whose router's one handler subscribes
// through sub. The router's CloseTimeout is a minute: a Start or Stop
// that waits for it outlives every bound below.
func blockedClient(t *testing.T, sub *blockedSubscriber) *converge.Client {
	t.Helper()
	sub.entered, sub.release = make(chan struct{}), make(chan struct{})
	store, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: time.Minute}, watermill.NopLogger{})
	require.NoError(t, err)
	router.AddConsumerHandler("blocked", "work", sub, func(*message.Message) error { return nil })
	client, err := converge.NewClient(store, &converge.Config{Router: router, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	return client
}

// startBlocked runs client.Start(ctx) in a goroutine, waits for it to
// block in sub's Subscribe, and returns where Start's result arrives. When
// the test ends, sub is released and Start awaited, so nothing outlives
// it.
func startBlocked(t *testing.T, ctx context.Context, client *converge.Client, sub *blockedSubscriber) <-chan error {
	t.Helper()
	started, returned := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(returned)
		started <- client.Start(ctx)
	}()
	t.Cleanup(func() {
		sub.free()
		select {
		case <-returned:
		case <-time.After(stopTimeout):
			t.Error("Start never returned")
		}
	})
	select {
	case <-sub.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("Start never subscribed")
	}
	return started
}

// receiveWithin returns what ch delivers, failing the test with msg when
// nothing comes within d.
func receiveWithin(t *testing.T, ch <-chan error, d time.Duration, msg string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(d):
		t.Fatal(msg)
		return nil
	}
}

// honouringSubscribers are the two ways a blocked Subscribe honours its
// context.
var honouringSubscribers = []struct {
	name string
	sub  func() *blockedSubscriber
}{
	{"subscribe fails", func() *blockedSubscriber { return &blockedSubscriber{failsOnCtx: true} }},
	{"subscription ends", func() *blockedSubscriber { return &blockedSubscriber{} }},
}

// TestStartIsBoundedByItsContext: "ctx bounds the start only" and "a
// failed Start stops what it started". A Start whose ctx ends while the
// router is still subscribing (a subscriber blocked in Subscribe, which
// honours its context) returns ctx's error at once, having stopped the
// router's Run, without waiting the router's CloseTimeout; the client is
// stopped for good, and a Stop has nothing to add.
func TestStartIsBoundedByItsContext(t *testing.T) {
	t.Parallel()
	for _, tc := range honouringSubscribers {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sub := tc.sub()
			client := blockedClient(t, sub)
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			started := startBlocked(t, ctx, client, sub)

			err := receiveWithin(t, started, 20*time.Second, "Start outlived its 200ms context by 20s: its clean-up waits for a router Run whose context nobody cancels")
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.NotContains(t, err.Error(), "router close timeout", "the clean-up waited for handlers that never ran")
			require.ErrorIs(t, client.Start(context.Background()), converge.ErrStopped)
			stop(t, client)
		})
	}
}

// TestStopDuringStartStopsTheStart: Stop "may be called without Start",
// and returns "when all of it has stopped". A Stop called while Start is
// still subscribing (a SIGTERM during start-up) cancels the start, which
// stops what it started and returns ErrStopped, and then returns itself,
// without waiting for the start to succeed.
func TestStopDuringStartStopsTheStart(t *testing.T) {
	t.Parallel()
	for _, tc := range honouringSubscribers {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sub := tc.sub()
			client := blockedClient(t, sub)
			started := startBlocked(t, context.Background(), client, sub)

			stopCtx, cancel := context.WithTimeout(context.Background(), stopTimeout)
			defer cancel()
			stopped := make(chan error, 1)
			go func() { stopped <- client.Stop(stopCtx) }()
			err := receiveWithin(t, stopped, 20*time.Second, "Stop during Start did not stop the start: it waits for Start to finish")
			require.NoError(t, err)
			err = receiveWithin(t, started, time.Second, "Stop returned before the Start it stopped")
			require.ErrorIs(t, err, converge.ErrStopped)
			require.ErrorIs(t, client.Start(context.Background()), converge.ErrStopped)
			stop(t, client)
		})
	}
}

// TestStopDuringStartIsBoundedByItsContext: Stop "returns when all of it
// has stopped or ctx is done". A Stop called while Start is subscribing
// through a subscriber that ignores its context, so the start cannot be
// cut short, returns ctx's error when ctx ends, instead of waiting for the
// start for as long as it lasts. The start, once the subscriber lets go,
// stops what it started, and a later Stop has nothing to add.
func TestStopDuringStartIsBoundedByItsContext(t *testing.T) {
	t.Parallel()
	sub := &blockedSubscriber{ignoresCtx: true}
	client := blockedClient(t, sub)
	started := startBlocked(t, context.Background(), client, sub)

	stopCtx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- client.Stop(stopCtx) }()
	err := receiveWithin(t, stopped, 20*time.Second, "Stop during Start outlived its 200ms context by 20s: it waits for Start to finish")
	require.ErrorIs(t, err, context.DeadlineExceeded)

	sub.free()
	err = receiveWithin(t, started, 20*time.Second, "the start never ended once its subscriber let go")
	require.ErrorIs(t, err, converge.ErrStopped)
	stop(t, client)
}

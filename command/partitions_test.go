package command_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
)

// TestPartitionedHandlers splits a handler's commands over four
// partitions: every command is handled once, commands of different
// senders run concurrently, and each sender's commands in order (here
// each sender deposits to an account of its own).
func TestPartitionedHandlers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, err := memstore.New(&memstore.Config{Registry: registry(t)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() }) // after the router's, which runRouter registers later
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	p, err := command.NewProcessor(&command.ProcessorConfig{Store: store, Router: router, Partitions: 4})
	require.NoError(t, err)

	const accounts, each = 8, 5
	var mu sync.Mutex
	order := map[string][]int{}
	var inFlight, most atomic.Int32
	release := make(chan struct{})
	require.NoError(t, p.AddHandlers(command.Handle("deposit", store, balance, func(c Deposit) string { return "account-" + c.Account },
		func(_ context.Context, _ int, c Deposit) ([]any, error) {
			n := inFlight.Add(1)
			defer inFlight.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			if n >= 2 {
				// Two partitions ran at once: let every handler go.
				select {
				case <-release:
				default:
					close(release)
				}
			}
			select {
			case <-release:
			case <-time.After(time.Second):
			}
			mu.Lock()
			order[c.Account] = append(order[c.Account], c.Amount)
			mu.Unlock()
			return []any{Deposited{Amount: c.Amount}}, nil
		})))
	for i := range each {
		for a := range accounts {
			_, err := store.Append(ctx, command.StreamFor("account.deposit", fmt.Sprint("p", a)), events.AnyVersion, events.Event{
				Data: Deposit{Account: fmt.Sprint(a), Amount: i + 1},
			})
			require.NoError(t, err)
		}
	}
	runRouter(t, router)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for a := range accounts {
			v, err := store.StreamVersion(ctx, fmt.Sprint("account-", a))
			require.NoError(c, err)
			require.EqualValues(c, each, v, "account-%d", a)
		}
	}, 30*time.Second, 5*time.Millisecond)
	require.GreaterOrEqual(t, most.Load(), int32(2), "partitions delivered concurrently")
	// Consumers names the checkpoints the partitions keep: each one
	// passes the last command (a lag monitor watching them sees the
	// handler caught up).
	head, err := store.Head(ctx)
	require.NoError(t, err)
	cons := p.Consumers()
	require.Len(t, cons, 1)
	require.Equal(t, "deposit", cons[0].Handler)
	require.Len(t, cons[0].Checkpoints, 4)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for _, name := range cons[0].Checkpoints {
			pos, err := store.Checkpoints().Position(ctx, name)
			require.NoError(c, err)
			assert.False(c, pos.Before(head), "%s stands at %s, before %s", name, pos, head)
		}
	}, 30*time.Second, 5*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for a := range accounts {
		require.Equal(t, []int{1, 2, 3, 4, 5}, order[fmt.Sprint(a)], "account %d's commands in order, once each", a)
	}
}

func TestPartitionsConfig(t *testing.T) {
	t.Parallel()
	store, err := memstore.New(&memstore.Config{Registry: registry(t)})
	require.NoError(t, err)
	defer store.Close()
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	_, err = command.NewProcessor(&command.ProcessorConfig{Store: store, Router: router, Partitions: -1})
	require.ErrorContains(t, err, "ProcessorConfig.Partitions is -1")
}

// TestPartitionedSendersShareAnAggregate: partitions split commands by
// sender, so commands of different senders for one account run at once
// in different partitions; every one of them still lands exactly once,
// each decided on the state the others left (the expected-version append
// decides again after a conflict).
func TestPartitionedSendersShareAnAggregate(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body
		ctx := context.Background()
		s := mk(t, registry(t))
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
		require.NoError(t, err)
		p, err := command.NewProcessor(&command.ProcessorConfig{Store: s, Router: router, Partitions: 4})
		require.NoError(t, err)
		var decided atomic.Int32
		require.NoError(t, p.AddHandlers(command.Handle("deposit", s, balance, func(c Deposit) string { return "account-" + c.Account },
			func(_ context.Context, _ int, c Deposit) ([]any, error) {
				decided.Add(1)
				return []any{Deposited{Amount: c.Amount}}, nil
			})))
		const senders, each = 8, 4
		want := 0
		for i := range each {
			for snd := range senders {
				amount := 1 + snd*each + i
				want += amount
				_, err := s.Append(ctx, command.StreamFor("account.deposit", fmt.Sprint("sender-", snd)), events.AnyVersion, events.Event{
					Data: Deposit{Account: "shared", Amount: amount}, Metadata: events.Metadata{CorrelationID: fmt.Sprint("sender-", snd)},
				})
				require.NoError(t, err)
			}
		}
		runRouter(t, router)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			v, err := s.StreamVersion(ctx, "account-shared")
			require.NoError(c, err)
			assert.GreaterOrEqual(c, v, int64(senders*each))
		}, 30*time.Second, 5*time.Millisecond)
		got, err := s.ReadStream(ctx, "account-shared", 1, 0)
		require.NoError(t, err)
		require.Len(t, got, senders*each, "every command landed once")
		sum := 0
		for _, env := range got {
			d, err := events.DecodeAs[Deposited](s.Registry(), env)
			require.NoError(t, err)
			sum += d.Amount
		}
		require.Equal(t, want, sum, "each deposit once, none lost to a concurrent sender")
		require.GreaterOrEqual(t, decided.Load(), int32(senders*each))
	})
}

// runRouter runs router until the test ends, then closes it and checks
// that it stopped cleanly; stores made before it close after it.
func runRouter(t *testing.T, router *message.Router) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- router.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, router.Close())
		require.NoError(t, <-done)
	})
}

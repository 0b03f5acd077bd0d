package command_test

import (
	"context"
	"fmt"
	"math/rand/v2"
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
	"github.com/converge-es/converge/events/feed"
)

// committedLog records the positions the handlers' consumers commit
// (SubscriberConfig.OnCommitted), and signals every commit.
type committedLog struct {
	mu    sync.Mutex
	pos   map[string]events.Token
	moved chan struct{}
}

func newCommittedLog() *committedLog {
	return &committedLog{pos: map[string]events.Token{}, moved: make(chan struct{}, 1)}
}

func (l *committedLog) onCommitted(name string, tok events.Token) {
	l.mu.Lock()
	l.pos[name] = tok
	l.mu.Unlock()
	select {
	case l.moved <- struct{}{}:
	default:
	}
}

// awaitAll blocks until every name has committed a position at or after
// tok.
func (l *committedLog) awaitAll(t *testing.T, tok events.Token, names ...string) {
	t.Helper()
	if behind := l.await(tok, names...); len(behind) > 0 {
		t.Fatalf("consumers %q never committed past %s", behind, tok)
	}
}

// await is awaitAll returning, after 30s, the names still behind.
func (l *committedLog) await(tok events.Token, names ...string) (behind []string) {
	deadline := time.After(30 * time.Second)
	for {
		l.mu.Lock()
		behind := []string{}
		for _, n := range names {
			if p, ok := l.pos[n]; !ok || p.Before(tok) {
				behind = append(behind, n)
			}
		}
		l.mu.Unlock()
		if len(behind) == 0 {
			return nil
		}
		select {
		case <-l.moved:
		case <-deadline:
			return behind
		}
	}
}

// startRouter runs router and returns a function that closes it and
// checks that it stopped cleanly.
func startRouter(t *testing.T, router *message.Router) (stop func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- router.Run(context.Background()) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			require.NoError(t, router.Close())
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestChangingPartitionsHandlesNothingTwice: a handler's commands are
// handled at Partitions 1; the processor is then restarted with 4. Its
// new consumers read the commands' category from the beginning (each
// commits a position past the last command), but the stored results make
// the commands already handled no-ops: the aggregate's version is still
// the number of commands, and the decision was not called again. A
// command sent after the change is handled once. The number of commands
// and their senders are drawn at random.
func TestChangingPartitionsHandlesNothingTwice(t *testing.T) {
	t.Parallel()
	eachStoreSeeded(t, func(t *testing.T, mk storeMaker, rng *rand.Rand) { //nolint:thelper // a subtest body
		ctx := context.Background()
		s := mk(t, registry(t))
		var decided atomic.Int32
		deposit := func(_ context.Context, _ int, c Deposit) ([]any, error) {
			decided.Add(1)
			return []any{Deposited{Amount: c.Amount}}, nil
		}
		newRouter := func(partitions int, log *committedLog) *message.Router {
			router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
			require.NoError(t, err)
			p, err := command.NewProcessor(&command.ProcessorConfig{
				Store: s, Router: router, Partitions: partitions,
				Subscriber: feed.SubscriberConfig{OnCommitted: log.onCommitted},
			})
			require.NoError(t, err)
			require.NoError(t, p.AddHandlers(command.Handle("deposit", s, balance, func(c Deposit) string { return "account-" + c.Account }, deposit)))
			return router
		}
		send := func(i, senders int) events.Token {
			sender := fmt.Sprint("sender-", rng.IntN(senders))
			res, err := s.Append(ctx, command.StreamFor("account.deposit", sender), events.AnyVersion, events.Event{
				Data: Deposit{Account: "shared", Amount: i + 1}, Metadata: events.Metadata{CorrelationID: sender},
			})
			require.NoError(t, err)
			return res.Token
		}
		topic := command.Category("account.deposit")

		n, senders := 3+rng.IntN(14), 1+rng.IntN(6)
		t.Logf("%d commands from %d senders", n, senders)
		var last events.Token
		for i := range n {
			last = send(i, senders)
		}

		before := newCommittedLog()
		stop := startRouter(t, newRouter(1, before))
		before.awaitAll(t, last, feed.CheckpointName("command.deposit", topic))
		stop()
		v, err := s.StreamVersion(ctx, "account-shared")
		require.NoError(t, err)
		require.EqualValues(t, n, v, "each command handled once at Partitions 1")
		require.EqualValues(t, n, decided.Load())

		after := newCommittedLog()
		startRouter(t, newRouter(4, after))
		names := make([]string, 4)
		for i := range names {
			names[i] = feed.CheckpointName(feed.PartitionName("command.deposit", i, 4), topic)
		}
		behind := after.await(last, names...)
		require.EqualValues(t, n, decided.Load(), "the new consumers decided handled commands again")
		require.Empty(t, behind, "consumers that never committed past the last command %s", last)
		v, err = s.StreamVersion(ctx, "account-shared")
		require.NoError(t, err)
		require.EqualValues(t, n, v, "the new consumers read the handled commands again, and appended nothing")
		require.EqualValues(t, n, decided.Load(), "nor decided any of them again")

		// The new processor handles what comes next, once.
		next := send(n, senders)
		after.awaitAll(t, next, names...)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			v, err := s.StreamVersion(ctx, "account-shared")
			assert.NoError(c, err)
			assert.EqualValues(c, n+1, v)
		}, 30*time.Second, 5*time.Millisecond)
		require.EqualValues(t, n+1, decided.Load())
	})
}

// TestRejectedCarriesTheCommandAsCausation: the Rejected event a refused
// command becomes has the command's correlation id, and the command's id
// as its causation id (not the command's own causation).
func TestRejectedCarriesTheCommandAsCausation(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body
		ctx := context.Background()
		s := mk(t, registry(t))
		stream := command.StreamFor("account.deposit", "process-3")
		_, err := s.Append(ctx, stream, events.AnyVersion, events.Event{
			Data: Deposit{Account: "r", Amount: 1}, Metadata: events.Metadata{CorrelationID: "process-3", CausationID: "the-step-that-sent-it"},
		})
		require.NoError(t, err)
		envs, err := s.ReadStream(ctx, stream, 1, 1)
		require.NoError(t, err)
		cmd := envs[0]
		require.Equal(t, "the-step-that-sent-it", cmd.Metadata.CausationID)

		res := runIn(t, s, cmd, func(context.Context, int, Deposit) ([]any, error) { return nil, command.Reject("closed account") })
		require.Equal(t, "closed account", res.Rejected)
		rej, err := s.ReadStream(ctx, command.StreamFor(command.RejectedType, "process-3"), 1, 0)
		require.NoError(t, err)
		require.Len(t, rej, 1)
		require.Equal(t, []string{rej[0].ID}, res.EventIDs, "the result names the Rejected event")
		require.Equal(t, cmd.ID, rej[0].Metadata.CausationID, "the command caused its rejection")
		require.Equal(t, "process-3", rej[0].Metadata.CorrelationID)
	})
}

package command_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// TestPanicUnderRetryMiddlewareAppliesOnce: a command handler that
// appends through its delivery's unit and then panics, under Watermill's
// usual middleware (Retry, with Recoverer inside it turning a panic into
// an error Retry answers with another call in the same unit), appends
// once: the panicked call's writes never commit beside a later call's.
// The panic reaches the middleware as the call's error, the
// RecoveredPanicError the Recoverer would have made, and the retries
// within the unit run nothing.
func TestPanicUnderRetryMiddlewareAppliesOnce(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body
		ctx := context.Background()
		s := mk(t, registry(t))
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
		require.NoError(t, err)
		var mu sync.Mutex
		var results []error // what each call inside Retry returned
		record := func(h message.HandlerFunc) message.HandlerFunc {
			return func(msg *message.Message) ([]*message.Message, error) {
				out, err := h(msg)
				mu.Lock()
				results = append(results, err)
				mu.Unlock()
				return out, err
			}
		}
		retry := middleware.Retry{MaxRetries: 2, InitialInterval: time.Millisecond}
		router.AddMiddleware(retry.Middleware, record, middleware.Recoverer)
		committed := newCommittedLog()
		p, err := command.NewProcessor(&command.ProcessorConfig{Store: s, Router: router, Subscriber: feed.SubscriberConfig{
			NackBackoffMin: time.Millisecond, NackBackoffMax: 5 * time.Millisecond, OnCommitted: committed.onCommitted,
		}})
		require.NoError(t, err)
		calls := 0
		require.NoError(t, p.AddHandlers(cqrs.NewCommandHandler("notify", func(ctx context.Context, c *Deposit) error {
			u, ok := events.UnitFromContext(ctx)
			if !ok {
				return errors.New("no unit in the handler's context")
			}
			if _, err := u.Append(ctx, "notified-"+c.Account, events.AnyVersion, events.Event{Data: Deposited{Amount: c.Amount}}); err != nil {
				return err
			}
			mu.Lock()
			calls++
			first := calls == 1
			mu.Unlock()
			if first {
				panic("boom after appending")
			}
			return nil
		})))
		cmd := sent(t, s, "sender-1", Deposit{Account: "a", Amount: 1})
		runRouter(t, router)
		committed.awaitAll(t, cmd.Token, feed.CheckpointName("command.notify", command.Category("account.deposit")))

		v, err := s.StreamVersion(ctx, "notified-a")
		require.NoError(t, err)
		require.Equal(t, int64(1), v, "the command's effect committed once")
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, 2, calls, "the handler ran once in the failed unit and once in the next")
		require.Len(t, results, 2+retry.MaxRetries, "the panicked call, the retries and the call in the next unit")
		var recovered middleware.RecoveredPanicError
		require.ErrorAs(t, results[0], &recovered, "the panic, as the Recoverer would have returned it")
		require.Equal(t, "boom after appending", recovered.V)
		require.ErrorContains(t, results[0], `handler notify panicked on command `+cmd.ID)
		for _, err := range results[1 : 1+retry.MaxRetries] {
			require.ErrorIs(t, err, feed.ErrUnitFailed)
		}
		require.NoError(t, results[len(results)-1])
	})
}

package command_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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

// TestRetryMiddlewareNeverAppliesTwice: a command handler that appends
// through its delivery's unit and then fails a random number of times,
// under Watermill's Retry middleware (which calls it again within one
// delivery, so in the same unit), appends once per command: a failed
// call's writes never commit beside a later call's.
func TestRetryMiddlewareNeverAppliesTwice(t *testing.T) {
	t.Parallel()
	eachStoreSeeded(t, func(t *testing.T, mk storeMaker, rng *rand.Rand) { //nolint:thelper // a subtest body
		ctx := context.Background()
		s := mk(t, registry(t))
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
		require.NoError(t, err)
		// ResetContextOnRetry hands each retry the original context: what
		// tells a retry from a first call must not live in the message.
		retry := middleware.Retry{MaxRetries: 1 + rng.IntN(3), InitialInterval: time.Millisecond, ResetContextOnRetry: rng.IntN(2) == 0}
		router.AddMiddleware(retry.Middleware)
		sub := feed.SubscriberConfig{NackBackoffMin: time.Millisecond, NackBackoffMax: 5 * time.Millisecond}
		p, err := command.NewProcessor(&command.ProcessorConfig{Store: s, Router: router, Subscriber: sub})
		require.NoError(t, err)

		n := 2 + rng.IntN(6)
		var mu sync.Mutex
		failures := map[string]int{} // calls left to fail, per account
		for i := range n {
			failures[fmt.Sprint("acct-", i)] = rng.IntN(4)
		}
		require.NoError(t, p.AddHandlers(cqrs.NewCommandHandler("notify", func(ctx context.Context, c *Deposit) error {
			u, ok := events.UnitFromContext(ctx)
			if !ok {
				return errors.New("no unit in the handler's context")
			}
			if _, err := u.Append(ctx, "notified-"+c.Account, events.AnyVersion, events.Event{Data: Deposited{Amount: c.Amount}}); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			if failures[c.Account] > 0 {
				failures[c.Account]--
				return errors.New("failed after appending")
			}
			return nil
		})))
		for i := range n {
			sent(t, s, fmt.Sprint("sender-", i), Deposit{Account: fmt.Sprint("acct-", i), Amount: i})
		}
		runRouter(t, router)
		awaitFeed(t, s, "every command handled", func() bool {
			mu.Lock()
			defer mu.Unlock()
			for acct, left := range failures {
				v, err := s.StreamVersion(ctx, "notified-"+acct)
				require.NoError(t, err)
				if left > 0 || v == 0 {
					return false
				}
			}
			return true
		})
		for i := range n {
			v, err := s.StreamVersion(ctx, fmt.Sprint("notified-acct-", i))
			require.NoError(t, err)
			require.Equal(t, int64(1), v, "command %d: appended once", i)
		}
	})
}

package command_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// TestHandlerBehindTheCausalTokenRefusesUntilTheReadModelReachesIt: what
// CausalToken's doc tells a handler that reads a read model to do, since
// it cannot wait inside its unit: compare the read model's checkpoint
// (feed.Unit.Positions) with the command's causal token and return an
// error while it is behind. The command is delivered again and again,
// deciding nothing, until the checkpoint reaches the token; then it is
// handled, once.
func TestHandlerBehindTheCausalTokenRefusesUntilTheReadModelReachesIt(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body
		ctx := context.Background()
		s := mk(t, registry(t))
		const readModel = "balances"
		lease, err := s.Checkpoints().Acquire(ctx, readModel, "test", time.Minute)
		require.NoError(t, err)
		seen, err := s.Append(ctx, "account-seen", events.AnyVersion, events.Event{Data: Deposited{Amount: 1}})
		require.NoError(t, err)
		_, err = s.Append(ctx, command.StreamFor("account.deposit", "sender-1"), events.AnyVersion, events.Event{
			Data: Deposit{Account: "c", Amount: 5},
			Metadata: events.Metadata{CorrelationID: "sender-1", Extra: map[string]string{
				command.MetaCausalToken: seen.Token.String(),
			}},
		})
		require.NoError(t, err)

		errBehind := errors.New("the read model is behind the command")
		refused := make(chan struct{}, 1)
		var refusals, decided atomic.Int32
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
		require.NoError(t, err)
		p, err := command.NewProcessor(&command.ProcessorConfig{
			Store: s, Router: router,
			Subscriber: feed.SubscriberConfig{NackBackoffMin: time.Millisecond, NackBackoffMax: 10 * time.Millisecond},
		})
		require.NoError(t, err)
		require.NoError(t, p.AddHandlers(command.Handle("deposit", s, balance, func(c Deposit) string { return "account-" + c.Account },
			func(ctx context.Context, _ int, c Deposit) ([]any, error) {
				env, err := feed.EnvelopeFromMessage(cqrs.OriginalMessageFromCtx(ctx))
				if err != nil {
					return nil, err
				}
				need, ok := command.CausalToken(env)
				if !ok {
					return nil, errors.New("the command carries no causal token")
				}
				eu, _ := events.UnitFromContext(ctx)
				u, ok := eu.(feed.Unit)
				if !ok {
					return nil, errors.New("the delivery carries no feed.Unit")
				}
				pos, err := u.Positions(ctx, readModel)
				if err != nil {
					return nil, err
				}
				if pos[0].Before(need) {
					refusals.Add(1)
					select {
					case refused <- struct{}{}:
					default:
					}
					return nil, fmt.Errorf("%w: at %s, the command needs %s", errBehind, pos[0], need)
				}
				decided.Add(1)
				return []any{Deposited{Amount: c.Amount}}, nil
			})))
		runRouter(t, router)

		for range 3 { // refused, and delivered again, while behind
			select {
			case <-refused:
			case <-time.After(30 * time.Second):
				t.Fatal("the handler was never called")
			}
		}
		v, err := s.StreamVersion(ctx, "account-c")
		require.NoError(t, err)
		require.Zero(t, v, "nothing decided while the read model is behind")

		require.NoError(t, s.Checkpoints().Advance(ctx, lease, seen.Token))
		require.Eventually(t, func() bool {
			v, err := s.StreamVersion(ctx, "account-c")
			return err == nil && v == 1
		}, 30*time.Second, 2*time.Millisecond, "handled once the read model reached the token")
		require.Equal(t, int32(1), decided.Load())
		require.GreaterOrEqual(t, refusals.Load(), int32(3))
	})
}

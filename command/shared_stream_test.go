package command_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
)

type (
	Pay       struct{ Account string }
	PayRefund struct{ Account string }
	Paid      struct{ Account string }
	Refunded  struct{ Account string }
)

// TestNestedCategoriesShareAStreamHarmlessly: the command types "pay" and
// "pay-refund" nest, so pay's category holds pay-refund's streams, and a
// pay for sender "refund-1" and a pay-refund for sender "1" share one
// stream. Each handler still takes exactly its own commands, once, and
// skips the other's.
func TestNestedCategoriesShareAStreamHarmlessly(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body
		ctx := context.Background()
		reg := registry(t)
		events.Register[Pay](reg, "pay")
		events.Register[PayRefund](reg, "pay-refund")
		events.Register[Paid](reg, "paid")
		events.Register[Refunded](reg, "refunded")
		s := mk(t, reg)
		require.Equal(t, command.StreamFor("pay", "refund-1"), command.StreamFor("pay-refund", "1"), "the two commands share a stream")

		var mu sync.Mutex
		took := map[string][]string{}
		note := func(handler, account string) {
			mu.Lock()
			defer mu.Unlock()
			took[handler] = append(took[handler], account)
		}
		none := events.Aggregate[int]{Apply: func(n int, _ any) (int, error) { return n + 1, nil }}
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
		require.NoError(t, err)
		p, err := command.NewProcessor(&command.ProcessorConfig{Store: s, Router: router})
		require.NoError(t, err)
		require.NoError(t, p.AddHandlers(
			command.Handle("pay", s, none, func(c Pay) string { return "payment-" + c.Account },
				func(_ context.Context, _ int, c Pay) ([]any, error) {
					note("pay", c.Account)
					return []any{Paid(c)}, nil
				}),
			command.Handle("pay-refund", s, none, func(c PayRefund) string { return "refund-" + c.Account },
				func(_ context.Context, _ int, c PayRefund) ([]any, error) {
					note("pay-refund", c.Account)
					return []any{Refunded(c)}, nil
				}),
		))
		for _, c := range []struct {
			typ, sender string
			data        any
		}{
			{"pay", "refund-1", Pay{Account: "x"}},
			{"pay-refund", "1", PayRefund{Account: "y"}},
			{"pay", "2", Pay{Account: "z"}},
		} {
			_, err := s.Append(ctx, command.StreamFor(c.typ, c.sender), events.AnyVersion, events.Event{Data: c.data, Metadata: events.Metadata{CorrelationID: c.sender}})
			require.NoError(t, err)
		}
		runRouter(t, router)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			for _, stream := range []string{"payment-x", "refund-y", "payment-z"} {
				v, err := s.StreamVersion(ctx, stream)
				require.NoError(c, err)
				assert.Positive(c, v, stream)
			}
		}, 30*time.Second, 5*time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		require.ElementsMatch(t, []string{"x", "z"}, took["pay"], "pay took its own commands once each, and no pay-refund")
		require.Equal(t, []string{"y"}, took["pay-refund"], "pay-refund took its own command once, and no pay")
		for stream, want := range map[string]int64{"payment-x": 1, "refund-y": 1, "payment-z": 1, "refund-x": 0, "payment-y": 0} {
			v, err := s.StreamVersion(ctx, stream)
			require.NoError(t, err)
			require.Equal(t, want, v, stream)
		}
	})
}

package command_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
)

// Withdraw is a command type that decodes itself, and panics on a payload
// without an account, as a decoder with an unchecked type assertion does.
type Withdraw struct{ Account string }

func (w *Withdraw) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	w.Account = m["Account"].(string) //nolint:errcheck // panics when "Account" is missing, on purpose
	return nil
}

// TestCommandWhoseDecodingPanicsIsRejected: a command whose upcaster, or
// whose type's UnmarshalJSON, panics on its payload does not decode, and
// is rejected like any command that does not decode, with the panic in
// the reason, before its handler sees it. Behind the router's Recoverer
// (as converge.NewClient runs it) a panic would otherwise fail the
// delivery on every retry, and the commands behind it would never run;
// here the good command behind each bad one is handled.
func TestCommandWhoseDecodingPanicsIsRejected(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body
		ctx := context.Background()
		reg := events.NewRegistry()
		events.RegisterVersioned[Deposit](reg, "account.deposit", 2, events.Upcaster{From: 1, Func: func(p json.RawMessage) (json.RawMessage, error) {
			var m map[string]any
			if err := json.Unmarshal(p, &m); err != nil {
				return nil, err
			}
			m["account"] = m["acct"].(string) //nolint:errcheck // panics when "acct" is missing, on purpose
			return json.Marshal(m)
		}})
		events.Register[Withdraw](reg, "account.withdraw")
		events.Register[Deposited](reg, "account.deposited")
		s := mk(t, reg)
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
		require.NoError(t, err)
		router.AddMiddleware(middleware.Recoverer)
		p, err := command.NewProcessor(&command.ProcessorConfig{Store: s, Router: router})
		require.NoError(t, err)
		var decided atomic.Int32
		require.NoError(t, p.AddHandlers(
			command.Handle("deposit", s, balance, func(c Deposit) string { return "account-" + c.Account },
				func(_ context.Context, _ int, c Deposit) ([]any, error) {
					decided.Add(1)
					return []any{Deposited{Amount: c.Amount}}, nil
				}),
			command.Handle("withdraw", s, balance, func(c Withdraw) string { return "account-" + c.Account },
				func(context.Context, int, Withdraw) ([]any, error) {
					decided.Add(1)
					return []any{Deposited{Amount: -1}}, nil
				}),
		))

		send := func(typ, sender string, data any) {
			_, err := s.Append(ctx, command.StreamFor(typ, sender), events.AnyVersion, events.Event{Data: data, Metadata: events.Metadata{CorrelationID: sender}})
			require.NoError(t, err)
		}
		send("account.deposit", "sender-1", events.Raw{Type: "account.deposit", SchemaVersion: 1, Payload: json.RawMessage(`{"amount":1}`)})
		send("account.withdraw", "sender-2", events.Raw{Type: "account.withdraw", Payload: json.RawMessage(`{"amount":1}`)})
		send("account.deposit", "sender-3", Deposit{Account: "good-deposit", Amount: 1})
		send("account.withdraw", "sender-4", Withdraw{Account: "good-withdraw"})
		runRouter(t, router)

		awaitFeed(t, s, "both good commands handled", func() bool {
			for _, stream := range []string{"account-good-deposit", "account-good-withdraw"} {
				v, err := s.StreamVersion(ctx, stream)
				require.NoError(t, err)
				if v == 0 {
					return false
				}
			}
			return true
		})
		require.Equal(t, int32(2), decided.Load(), "only the good commands were decided")
		for sender, says := range map[string]string{
			"sender-1": "the upcaster from v1 panicked",
			"sender-2": "decoding into *command_test.Withdraw panicked",
		} {
			rej, err := s.ReadStream(ctx, command.StreamFor(command.RejectedType, sender), 1, 0)
			require.NoError(t, err)
			require.Len(t, rej, 1, "%s: its command is rejected", sender)
			ev, err := events.DecodeAs[command.Rejected](reg, rej[0])
			require.NoError(t, err)
			require.Contains(t, ev.Reason, "does not decode", sender)
			require.Contains(t, ev.Reason, says, sender)
			require.Contains(t, ev.Reason, "interface conversion", "%s: the reason says what panicked, and with what", sender)
		}
	})
}

package command_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
)

// TestCommandWithMetadataNearTheLimitGetsAnOutcome: a command the store
// accepted, its metadata near Limits.MaxPayloadBytes and without a
// causation id: the events it decides, and its Rejected event, carry its
// id as causation on top and are refused. It is rejected in its result,
// without an event, instead of failing at every delivery.
func TestCommandWithMetadataNearTheLimitGetsAnOutcome(t *testing.T) {
	t.Parallel()
	for name, mk := range limitedStores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			const limit = 4096
			s := mk(t, registry(t), events.Limits{MaxPayloadBytes: limit})
			corr := strings.Repeat("c", limit-10) // the command's metadata: 4086 bytes, accepted
			stream := command.StreamFor("account.deposit", corr)
			sent, err := s.Append(ctx, stream, events.AnyVersion, events.Event{
				Data: Deposit{Account: "a", Amount: 5}, Metadata: events.Metadata{CorrelationID: corr},
			})
			require.NoError(t, err, "the store accepts the command")
			envs, err := s.ReadStream(ctx, stream, sent.LastVersion, 1)
			require.NoError(t, err)
			var calls atomic.Int32
			res, err := tryRunIn(t, s, envs[0], decide(&calls))
			require.NoError(t, err, "the command gets an outcome instead of failing at every delivery")
			require.Contains(t, res.Rejected, "no Rejected event", "rejected, in its result only: %+v", res)
			again, err := tryRunIn(t, s, envs[0], decide(&calls))
			require.NoError(t, err)
			require.Equal(t, res.Rejected, again.Rejected, "a redelivery reports the original outcome")
		})
	}
}

// TestCommandWithMetadataNearTheLimitHoldsUpNoOther: such a command,
// through the processor, no longer holds up the commands behind it (it was
// decided again and again, and the next command never handled).
func TestCommandWithMetadataNearTheLimitHoldsUpNoOther(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const limit = 4096
	s := limitedStores["memory"](t, registry(t), events.Limits{MaxPayloadBytes: limit})
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	p, err := command.NewProcessor(&command.ProcessorConfig{Store: s, Router: router})
	require.NoError(t, err)
	var calls atomic.Int32
	require.NoError(t, p.AddHandlers(command.Handle("deposit", s, balance, func(c Deposit) string { return "account-" + c.Account }, decide(&calls))))
	corr := strings.Repeat("c", limit-10)
	_, err = s.Append(ctx, command.StreamFor("account.deposit", corr), events.AnyVersion, events.Event{
		Data: Deposit{Account: "a", Amount: 5}, Metadata: events.Metadata{CorrelationID: corr},
	})
	require.NoError(t, err)
	_, err = s.Append(ctx, command.StreamFor("account.deposit", "p-2"), events.AnyVersion, events.Event{
		Data: Deposit{Account: "b", Amount: 7}, Metadata: events.Metadata{CorrelationID: "p-2", CausationID: "x"},
	})
	require.NoError(t, err)
	runRouter(t, router)
	require.Eventually(t, func() bool {
		v, err := s.StreamVersion(ctx, "account-b")
		return err == nil && v == 1
	}, 5*time.Second, 10*time.Millisecond, "the later command is handled")
}

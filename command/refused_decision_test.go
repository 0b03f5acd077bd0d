package command_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
)

type Memo struct {
	Text string `json:"text"`
}

// TestRefusedDecisionBecomesARejection: a decision whose events the store
// refuses (a payload over the limit, a NUL in a string, an aggregate
// stream id that is not valid) can never succeed on a retry, so it is
// rejected like Reject: a Rejected event on the sender's correlation with
// the store's reason, nothing on the aggregate, and the same result on
// every redelivery. Kinds are drawn at random.
func TestRefusedDecisionBecomesARejection(t *testing.T) {
	t.Parallel()
	eachStoreSeeded(t, func(t *testing.T, mk storeMaker, rng *rand.Rand) { //nolint:thelper // a subtest body
		ctx := context.Background()
		reg := registry(t)
		events.Register[Memo](reg, "account.memo")
		s := mk(t, reg)
		for i := range 6 {
			account, memo := "a", ""
			switch rng.IntN(3) {
			case 0:
				memo = strings.Repeat("x", events.DefaultMaxPayloadBytes)
			case 1:
				memo = "before\x00after"
			default:
				account = "bad\x01id"
			}
			stream := command.StreamFor("account.deposit", "process-7")
			res, err := s.Append(ctx, stream, events.AnyVersion, events.Event{Data: Deposit{Account: account, Amount: i}, Metadata: events.Metadata{CorrelationID: "process-7"}})
			require.NoError(t, err)
			envs, err := s.ReadStream(ctx, stream, res.LastVersion, 1)
			require.NoError(t, err)
			cmd := envs[0]
			refused := func(_ context.Context, _ int, c Deposit) ([]any, error) {
				return []any{Deposited{Amount: c.Amount}, Memo{Text: memo}}, nil
			}
			first := runIn(t, s, cmd, refused)
			require.Contains(t, first.Rejected, "the store refuses the decision")
			require.Equal(t, first, runIn(t, s, cmd, refused), "a redelivery reports the first result")

			rej, err := s.ReadStream(ctx, command.StreamFor(command.RejectedType, "process-7"), 1, 0)
			require.NoError(t, err)
			require.Len(t, rej, i+1, "one rejection per command")
			got, err := events.DecodeAs[command.Rejected](reg, rej[i])
			require.NoError(t, err)
			require.Equal(t, cmd.ID, got.CommandID)
			require.Equal(t, first.Rejected, got.Reason)
			if account == "a" {
				v, err := s.StreamVersion(ctx, "account-a")
				require.NoError(t, err)
				require.Zero(t, v, "nothing of the decision is on the aggregate")
			}
		}
	})
}

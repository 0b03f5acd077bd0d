package command_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
)

var errGateway = errors.New("payment gateway timed out")

// TestOtherDecisionErrorsAreRetriedNotRecorded: a decision that fails
// with an error other than a rejection (a gateway timeout, say) is
// returned, so the delivery is retried: nothing is appended, no Rejected
// event reaches the sender, and no result is recorded that a redelivery
// would report. Once the decision succeeds, the command's events land
// once and later redeliveries report that result without deciding again.
// How many deliveries fail first, and how the error is wrapped, are drawn
// at random.
func TestOtherDecisionErrorsAreRetriedNotRecorded(t *testing.T) {
	t.Parallel()
	eachStoreSeeded(t, func(t *testing.T, mk storeMaker, rng *rand.Rand) { //nolint:thelper // a subtest body
		ctx := context.Background()
		reg := registry(t)
		s := mk(t, reg)
		cmd := sent(t, s, "process-9", Deposit{Account: "t", Amount: 40})

		failures, calls := 1+rng.IntN(4), 0
		flaky := func(_ context.Context, b int, c Deposit) ([]any, error) {
			calls++
			if calls <= failures {
				if rng.IntN(2) == 0 {
					return nil, fmt.Errorf("charge card: %w", errGateway)
				}
				return nil, errGateway
			}
			return []any{Deposited{Amount: b + c.Amount}}, nil
		}
		for i := range failures {
			_, err := tryRunIn(t, s, cmd, flaky)
			require.ErrorIs(t, err, errGateway, "delivery %d: the error is returned, so the delivery is retried", i+1)
			v, err := s.StreamVersion(ctx, "account-t")
			require.NoError(t, err)
			require.Zero(t, v, "a failed decision appends nothing")
			rej, err := s.StreamVersion(ctx, command.StreamFor(command.RejectedType, "process-9"))
			require.NoError(t, err)
			require.Zero(t, rej, "a transient error is not a rejection")
		}
		require.Equal(t, failures, calls, "every failed delivery decided afresh: no failure was recorded as the result")

		first := runIn(t, s, cmd, flaky)
		require.Empty(t, first.Rejected)
		require.Len(t, first.EventIDs, 1)
		require.Equal(t, first, runIn(t, s, cmd, flaky), "a redelivery reports the result")
		require.Equal(t, failures+1, calls, "and does not decide again")
		got, err := s.ReadStream(ctx, "account-t", 1, 0)
		require.NoError(t, err)
		require.Len(t, got, 1, "the deposit landed once")
	})
}

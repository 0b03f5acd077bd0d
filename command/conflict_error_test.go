package command_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

// TestPersistentConflictSaysWhatAHandlersAuthorCanDo: when another writer
// appends to the aggregate between every load and append, Run decides
// again a few times, then fails the delivery. Its error says what the
// author of a command handler can do about it (the delivery is retried
// with backoff; an aggregate this busy is better split), not what
// events.Update says (raise UpdateConfig.MaxAttempts, which Handle and
// Run do not take), and still matches events.ErrWrongExpectedVersion.
// Nothing is recorded: once the other writer stops, a redelivery decides
// and appends. A decision's own conflict error is returned unchanged.
func TestPersistentConflictSaysWhatAHandlersAuthorCanDo(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body
		ctx := context.Background()
		s := mk(t, registry(t))
		cmd := sent(t, s, "process-1", Deposit{Account: "a", Amount: 1})
		busy, decided := true, 0
		decision := func(_ context.Context, _ int, c Deposit) ([]any, error) {
			decided++
			if busy { // another writer gets in between every load and append
				if _, err := s.Append(ctx, "account-a", events.AnyVersion, events.Event{Data: Deposited{Amount: 100}}); err != nil {
					return nil, err
				}
			}
			return []any{Deposited{Amount: c.Amount}}, nil
		}
		_, err := tryRunIn(t, s, cmd, decision)
		t.Logf("error: %v", err)
		require.ErrorIs(t, err, events.ErrWrongExpectedVersion)
		var wev *events.WrongExpectedVersionError
		require.ErrorAs(t, err, &wev)
		require.Equal(t, "account-a", wev.StreamID)
		require.NotContains(t, err.Error(), "UpdateConfig", "no advice about a setting Handle and Run do not expose")
		require.ErrorContains(t, err, "retried with backoff")
		require.ErrorContains(t, err, "split")
		require.ErrorContains(t, err, `"account-a"`)
		require.Equal(t, 5, decided, "decided again on each conflict, then gave up")

		busy = false
		res, err := tryRunIn(t, s, cmd, decision)
		require.NoError(t, err, "no failure was recorded: a redelivery decides afresh")
		require.Len(t, res.EventIDs, 1)
		require.Empty(t, res.Rejected)

		other := sent(t, s, "process-2", Deposit{Account: "a", Amount: 1})
		own := fmt.Errorf("the ledger moved: %w", events.ErrWrongExpectedVersion)
		_, err = tryRunIn(t, s, other, func(context.Context, int, Deposit) ([]any, error) { return nil, own })
		require.True(t, errors.Is(err, own), "a decision's own error is returned as it is: %v", err)
		require.NotContains(t, err.Error(), "retried with backoff")
	})
}

// fieldErrors is an error of a slice type, as validators return: its
// values cannot be compared with ==.
type fieldErrors []string

func (e fieldErrors) Error() string { return strings.Join(e, "; ") }

// TestDecideErrorOfAnUncomparableTypeIsReturned: a decision that fails
// with an error of a slice (or map) type has it returned as it is, on both
// stores; telling it from the store's conflict error compared the two, and
// == on such an error panics.
func TestDecideErrorOfAnUncomparableTypeIsReturned(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body
		s := mk(t, registry(t))
		cmd := sent(t, s, "process-1", Deposit{Account: "a", Amount: 1})
		want := fieldErrors{"amount: too small", "account: unknown"}
		var err error
		require.NotPanics(t, func() {
			_, err = tryRunIn(t, s, cmd, func(context.Context, int, Deposit) ([]any, error) { return nil, want })
		})
		var got fieldErrors
		require.ErrorAs(t, err, &got)
		require.Equal(t, want, got)
	})
}

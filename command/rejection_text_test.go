package command_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
)

// maxReason is how much of a reason is kept (4 KiB), before the note of
// how long it was.
const maxReason = 4 << 10

// TestRejectionReasonIsStoredWhateverItHolds: a rejection's reason is
// free text, and no reason may fail the delivery that records it (a
// failed one is retried for ever, every later command of the handler
// waiting behind it). A decision's reason with a NUL, invalid UTF-8,
// nothing at all, or megabytes of text, and the store's own reason for
// refusing a decision on a stream id of 300 KB of DEL characters (which
// it quotes whole, four bytes each), are each recorded: a Rejected event
// whose reason is the result's, NUL and invalid UTF-8 shown as U+FFFD,
// cut at 4 KiB saying how long it was, and the same result on every
// redelivery. The text around each kind is random.
func TestRejectionReasonIsStoredWhateverItHolds(t *testing.T) {
	t.Parallel()
	eachStoreSeeded(t, func(t *testing.T, mk storeMaker, rng *rand.Rand) { //nolint:thelper // a subtest body
		ctx := context.Background()
		s := mk(t, registry(t))
		pieces := []string{"a", " ", "é", "€", "😀", "\n", `"`, "<"}
		text := func(n int) string {
			var b strings.Builder
			for b.Len() < n {
				b.WriteString(pieces[rng.IntN(len(pieces))])
			}
			return b.String()
		}
		kinds := []string{"nul", "invalid utf-8", "empty", "long", "store's own"}
		rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
		for i, kind := range kinds {
			sender := fmt.Sprint("process-", i)
			account, reason := "a", ""
			switch kind {
			case "nul":
				reason = text(rng.IntN(40)) + "\x00" + text(rng.IntN(40))
			case "invalid utf-8":
				reason = text(rng.IntN(40)) + "\xff\xfe" + text(rng.IntN(40))
			case "long":
				reason = text(maxReason + 1 + rng.IntN(2<<20))
			case "store's own":
				account = strings.Repeat("\x7f", 200_000+rng.IntN(100_000))
			}
			cmd := sent(t, s, sender, Deposit{Account: account, Amount: 1})
			var decided int
			decision := func(context.Context, int, Deposit) ([]any, error) {
				decided++
				if kind == "store's own" {
					return []any{Deposited{Amount: 1}}, nil
				}
				return nil, command.Reject(reason)
			}
			first, err := tryRunIn(t, s, cmd, decision)
			require.NoError(t, err, "%s: the rejection is recorded", kind)
			for range 2 {
				again, err := tryRunIn(t, s, cmd, decision)
				require.NoError(t, err, "%s: a redelivery", kind)
				require.Equal(t, first, again, "%s: a redelivery reports the first result", kind)
			}
			if kind == "store's own" {
				require.Zero(t, decided, "the store refuses to load the stream before any decision")
			} else {
				require.Equal(t, 1, decided, "%s: decided once", kind)
			}

			got := first.Rejected
			require.NotContains(t, got, "\x00", kind)
			require.True(t, utf8.ValidString(got), kind)
			require.LessOrEqual(t, len(got), maxReason+len(" … (10000000 bytes in all)"), kind)
			switch kind {
			case "nul", "invalid utf-8":
				want := strings.ToValidUTF8(strings.ReplaceAll(reason, "\x00", "\uFFFD"), "\uFFFD")
				require.Equal(t, want, got, "%s: a short reason is kept whole, shown as U+FFFD", kind)
			case "empty":
				require.NotEmpty(t, got, "an empty reason still says the command was rejected")
			case "long":
				kept, rest, ok := strings.Cut(got, "… (")
				require.True(t, ok, "a long reason says it was cut")
				require.True(t, strings.HasPrefix(reason, kept), "and keeps its start")
				require.Equal(t, fmt.Sprintf("%d bytes in all)", len(reason)), rest)
			case "store's own":
				require.Contains(t, got, "the store refuses the decision")
			}

			rej, err := s.ReadStream(ctx, command.StreamFor(command.RejectedType, sender), 1, 0)
			require.NoError(t, err)
			require.Len(t, rej, 1, "%s: one Rejected event", kind)
			ev, err := events.DecodeAs[command.Rejected](s.Registry(), rej[0])
			require.NoError(t, err)
			require.Equal(t, command.Rejected{CommandID: cmd.ID, Type: "account.deposit", Reason: got}, ev, kind)
			require.Equal(t, []string{rej[0].ID}, first.EventIDs, kind)
		}
		v, err := s.StreamVersion(ctx, "account-a")
		require.NoError(t, err)
		require.Zero(t, v, "no rejected command deposited anything")
	})
}

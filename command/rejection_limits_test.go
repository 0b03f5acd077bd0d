package command_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

// limitedStores make the stores the tests run on, with lim.
var limitedStores = map[string]func(t *testing.T, reg *events.Registry, lim events.Limits) store{
	"memory": func(t *testing.T, reg *events.Registry, lim events.Limits) store {
		t.Helper()
		s, err := memstore.New(&memstore.Config{Registry: reg, Limits: lim})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	},
	"postgres": func(t *testing.T, reg *events.Registry, lim events.Limits) store {
		t.Helper()
		db := pgtest.New(t, nil)
		s, err := pgstore.New(context.Background(), db.Pool, &pgstore.Config{Schema: db.Schema, Registry: reg, Limits: lim})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	},
}

// rejectedSize is the size of the payload of the Rejected event of a
// command of account.deposit with reason.
func rejectedSize(t *testing.T, commandID, reason string) int {
	t.Helper()
	b, err := json.Marshal(command.Rejected{CommandID: commandID, Type: "account.deposit", Reason: reason})
	require.NoError(t, err)
	n, err := events.PayloadReadBackSize(b) // what the limit counts
	require.NoError(t, err)
	return n
}

// randomReason mixes what JSON escapes (up to six bytes a byte: '<', '>',
// '&', control characters, U+2028), multi-byte runes, NUL and invalid
// UTF-8 (stored as U+FFFD), in a reason of up to about 6 KiB, around the
// 4 KiB cut.
func randomReason(rng *rand.Rand) string {
	pieces := []string{"<", ">", "&", "\x01", "\x1f", "\n", `"`, `\`, "\u2028", "a", " ", "é", "€", "😀", "\x00", "\xff", "\xe2\x82"}
	weights := rng.Perm(len(pieces)) // each reason leans on some pieces
	var b strings.Builder
	n := 1 + rng.IntN(6<<10)
	for b.Len() < n {
		i := rng.IntN(len(pieces))
		if weights[i] < len(pieces)/2 && rng.IntN(4) > 0 {
			continue
		}
		b.WriteString(pieces[i])
	}
	return b.String()
}

// TestRejectionFitsTheStoresPayloadLimit: a rejection's reason is cut at
// 4 KiB, but JSON escapes '<', '>', '&' and control characters in six
// bytes, so a reason under the cut (an HTML error page a downstream
// service returned) can encode to 24 KiB, over a store's lowered
// Limits.MaxPayloadBytes: a Rejected event the store refuses would fail
// the delivery for ever. Whatever the reason holds and whatever the limit
// (random, from just above what the event takes with a cut-down reason to
// 64 KiB), the rejection is recorded, with as much of the reason as fits
// under both the 4 KiB cut and the limit (one rune more would not fit),
// saying how long it was in all when cut, and a redelivery reports the
// same result.
func TestRejectionFitsTheStoresPayloadLimit(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	for name, mk := range limitedStores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 2))
			ctx := context.Background()
			stores, commands := 6, 5
			if name == "memory" {
				stores = 40
			}
			// The event with its reason cut to nothing, for a reason of up
			// to 99999 bytes.
			floor := rejectedSize(t, "00000000-0000-0000-0000-000000000000", "… (99999 bytes in all)")
			var whole, cutByLimit int
			for k := range stores {
				limit := floor + rng.IntN(64<<10-floor+1)
				if k == 0 || rng.IntN(3) == 0 { // just above the floor
					limit = floor + rng.IntN(256)
				}
				s := mk(t, registry(t), events.Limits{MaxPayloadBytes: limit})
				for i := range commands {
					sender := fmt.Sprint("process-", i)
					reason := randomReason(rng)
					cmd := sent(t, s, sender, Deposit{Account: "a", Amount: 1})
					decision := func(context.Context, int, Deposit) ([]any, error) { return nil, command.Reject(reason) }
					first, err := tryRunIn(t, s, cmd, decision)
					require.NoError(t, err, "limit %d, reason of %d bytes: the rejection is recorded", limit, len(reason))
					again, err := tryRunIn(t, s, cmd, decision)
					require.NoError(t, err)
					require.Equal(t, first, again, "a redelivery reports the first result")

					got := first.Rejected
					require.True(t, utf8.ValidString(got))
					require.LessOrEqual(t, rejectedSize(t, cmd.ID, got), limit)
					text := strings.ToValidUTF8(strings.ReplaceAll(reason, "\x00", "\uFFFD"), "\uFFFD")
					if got == text {
						whole++
					} else {
						kept, rest, ok := strings.Cut(got, "… (")
						require.True(t, ok, "a cut reason says so: %q", got)
						require.Equal(t, fmt.Sprintf("%d bytes in all)", len(text)), rest, "and how long it was")
						require.True(t, strings.HasPrefix(text, kept), "it keeps the reason's start")
						require.LessOrEqual(t, len(kept), maxReason, "at most 4 KiB of it")
						if _, size := utf8.DecodeRuneInString(text[len(kept):]); len(kept)+size <= maxReason {
							cutByLimit++
							more := text[:len(kept)+size] + "… (" + rest
							require.Greater(t, rejectedSize(t, cmd.ID, more), limit, "cut no more than the limit needs")
						}
					}
					rej, err := s.ReadStream(ctx, command.StreamFor(command.RejectedType, sender), 1, 0)
					require.NoError(t, err)
					require.Len(t, rej, 1, "one Rejected event")
					ev, err := events.DecodeAs[command.Rejected](s.Registry(), rej[len(rej)-1])
					require.NoError(t, err)
					require.Equal(t, command.Rejected{CommandID: cmd.ID, Type: "account.deposit", Reason: got}, ev)
				}
			}
			t.Logf("%d reasons whole, %d cut below 4 KiB by the limit", whole, cutByLimit)
			require.Positive(t, cutByLimit)
		})
	}
}

// TestRejectionOverAnyReasonSaysWhichLimitToRaise: a store whose payload
// limit is below what a Rejected event takes with its reason cut to
// nothing cannot record a rejection; the delivery fails saying which
// limit to raise, and to what.
func TestRejectionOverAnyReasonSaysWhichLimitToRaise(t *testing.T) {
	t.Parallel()
	for name, mk := range limitedStores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			// Big enough for the command itself.
			s := mk(t, registry(t), events.Limits{MaxPayloadBytes: 40})
			cmd := sent(t, s, "process-1", Deposit{Account: "a", Amount: 1})
			_, err := tryRunIn(t, s, cmd, func(context.Context, int, Deposit) ([]any, error) { return nil, command.Reject("<no>") })
			require.ErrorContains(t, err, "raise Limits.MaxPayloadBytes to at least")
			need := rejectedSize(t, cmd.ID, "<no>")
			require.ErrorContains(t, err, fmt.Sprint(need))

			s = mk(t, registry(t), events.Limits{MaxPayloadBytes: need})
			cmd = sent(t, s, "process-1", Deposit{Account: "a", Amount: 1})
			res, err := tryRunIn(t, s, cmd, func(context.Context, int, Deposit) ([]any, error) { return nil, command.Reject("<no>") })
			require.NoError(t, err, "at that limit it is recorded")
			require.Equal(t, "<no>", res.Rejected)
		})
	}
}

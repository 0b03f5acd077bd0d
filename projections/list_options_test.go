package projections_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

// TestBadListOptionsAreInvalidKeys: ListOptions whose Prefix or After a
// key could not hold (a control character, C0, DEL or C1, invalid UTF-8,
// more than MaxKeyLength bytes) are refused with ErrInvalidKey before they
// reach the store, which would refuse some with feed.ErrInvalidRow and
// accept others, on both stores alike; the longest valid ones are listed.
func TestBadListOptionsAreInvalidKeys(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{balances("list_opts", nil)}})
			res := f.append(t, "acct-a", Deposited{"a", 1})
			f.waitFor(t, res.Token, "list_opts")
			view := r.View("list_opts").Table("accounts")

			longest := strings.Repeat("é", projections.MaxKeyLength/2)
			rows, err := view.List(ctx, &projections.ListOptions{Prefix: longest, After: longest})
			require.NoError(t, err, "options of MaxKeyLength bytes are valid")
			require.Empty(t, rows)
			rows, err = view.List(ctx, &projections.ListOptions{Prefix: "a"})
			require.NoError(t, err)
			require.Len(t, rows, 1)

			rng := rand.New(rand.NewPCG(7, 11))
			valid := func() string {
				const alphabet = "abcé/-_ 0€"
				rs := []rune(alphabet)
				var sb strings.Builder
				for range rng.IntN(8) {
					sb.WriteRune(rs[rng.IntN(len(rs))])
				}
				return sb.String()
			}
			bad := func() string {
				s := valid()
				cuts := []int{len(s)} // rune boundaries, so only mid is bad
				for i := range s {
					cuts = append(cuts, i)
				}
				at := cuts[rng.IntN(len(cuts))]
				var mid string
				switch rng.IntN(5) {
				case 0:
					mid = string(rune(rng.IntN(0x20))) // C0, NUL included
				case 1:
					mid = "\x7f"
				case 2:
					mid = string(rune(0x80 + rng.IntN(0x20))) // C1, valid UTF-8
				case 3:
					mid = string([]byte{0x80 + byte(rng.IntN(0x80))}) // a lone continuation or lead byte
				default:
					mid = strings.Repeat("x", projections.MaxKeyLength+1-len(s)+rng.IntN(100))
				}
				return s[:at] + mid + s[at:]
			}
			for i := range 200 {
				opts := &projections.ListOptions{Prefix: valid(), After: valid(), Limit: rng.IntN(3)}
				if rng.IntN(2) == 0 {
					opts.Prefix = bad()
				} else {
					opts.After = bad()
				}
				_, err := view.List(ctx, opts)
				require.ErrorIs(t, err, projections.ErrInvalidKey, "case %d: %+q", i, *opts)
				require.NotErrorIs(t, err, feed.ErrInvalidRow, "case %d: refused before the store", i)
			}
		})
	}
}

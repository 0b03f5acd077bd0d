package saga_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
)

// TestOperatorCancelReasonIsStoredWhateverItHolds: an operator's cancel
// reason is stored as Engine.Cancel stores it, whatever it holds (NUL
// anywhere, invalid UTF-8, up to twice the row limit): the request is
// recorded, an engine carries it out, and the instance keeps the reason
// without NUL, cut at 4 KiB saying its full size. Stored raw, the request
// row was refused ("value contains a NUL character", "the limit is
// 1048576"), and the instance could not be cancelled by an operator.
func TestOperatorCancelReasonIsStoredWhateverItHolds(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 177))
		fx := newFixture(t, mk, setup{})
		ctx := context.Background()
		op, err := saga.NewOperator(&saga.OperatorConfig{Source: fx.Store(), Clock: fx.Clock()})
		require.NoError(t, err)
		pieces := append([]string{"\xff", "\xc3", "\xe2\x82"}, textPieces...)
		for i := range 9 {
			id := fmt.Sprint("c", i)
			size := 1 + rng.IntN(64)
			switch i % 3 {
			case 1:
				size = 3<<10 + rng.IntN(2<<10) // around the cut
			case 2:
				size = 1<<20 + rng.IntN(1<<20) // past the row limit
			}
			var b strings.Builder
			b.WriteString("\x00") // NUL first, then anywhere
			for b.Len() < size {
				b.WriteString(pieces[rng.IntN(len(pieces))])
			}
			reason := b.String()
			if i == 8 {
				// Just under the cut, where a cut made early for its note
				// would shorten what Engine.Cancel keeps whole.
				reason = strings.Repeat("r", 4<<10-rng.IntN(64))
			}
			fx.Given(placed(id, 30))

			require.NoError(t, errOf(op.RequestCancel(ctx, orders, id, reason)), "reason of %d bytes", len(reason))
			r, ok, err := op.Pending(ctx, orders, id)
			require.NoError(t, err)
			require.True(t, ok, "the request is recorded")
			require.NotContains(t, r.Reason, "\x00")

			_, err = fx.Engine().RunParked(ctx)
			require.NoError(t, err)
			require.NoError(t, fx.Settle())
			fx.ExpectStatus(orders, id, saga.StatusCancelled)
			_, ok, err = op.Pending(ctx, orders, id)
			require.NoError(t, err)
			require.False(t, ok, "the request was carried out")

			stored := fx.Instance(orders, id).Reason
			require.NotContains(t, stored, "\x00")
			require.True(t, utf8.ValidString(stored))
			require.LessOrEqual(t, len(stored), 4<<10, "cut at 4 KiB")
			want := strings.ReplaceAll(strings.ToValidUTF8(reason, "\uFFFD"), "\x00", "\uFFFD")
			if len(want) <= 4<<10 { // within the cut: kept whole, as Engine.Cancel keeps it
				require.Equal(t, want, stored)
				continue
			}
			require.True(t, strings.HasPrefix(stored, want[:3<<10]), "the reason's beginning is kept")
			require.True(t, strings.HasSuffix(stored, fmt.Sprintf("(%d bytes in all)", len(want))), "stored %q…", stored[max(0, len(stored)-40):])
		}
	})
}

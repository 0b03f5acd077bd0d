package saga_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestListPagesWithCursors: listing page by page, each page after the
// last Info's Cursor, returns exactly what one listing returns, in the
// same order, whatever the page size, the saga type and status filters
// and the ids (SQL, LIKE and escaping metacharacters, multi-byte UTF-8).
// A cursor that cannot be one is refused with an error that says so.
func TestListPagesWithCursors(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 311))
		var defs []saga.Definition
		for _, name := range []string{"order", "order-v2"} {
			s := saga.New[orderState](name, nil)
			saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
				if e.Total%3 == 0 { // some end, so the status filter has work
					st.Complete()
				}
				return nil
			})
			defs = append(defs, s)
		}
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Sagas = defs }})
		for i := range 10 + rng.IntN(20) {
			fx.When(placed(fmt.Sprint(randomID(rng, 1+rng.IntN(12)), i), 1+rng.IntN(9)))
		}
		ctx := t.Context()
		for _, f := range []saga.Filter{{}, {Saga: "order"}, {Saga: "order-v2"}, {Status: saga.StatusCompleted}, {Saga: "order", Status: saga.StatusRunning}} {
			whole := f
			whole.Limit = 1 << 20
			want, err := fx.Engine().List(ctx, whole)
			require.NoError(t, err)
			var got []saga.Info
			page := f
			page.Limit = 1 + rng.IntN(7)
			for range len(want) + 2 {
				part, err := fx.Engine().List(ctx, page)
				require.NoError(t, err)
				require.LessOrEqual(t, len(part), page.Limit)
				got = append(got, part...)
				if len(part) < page.Limit {
					break
				}
				page.After = part[len(part)-1].Cursor()
			}
			require.Equal(t, want, got, "seed %d, filter %+v, pages of %d", seed, f, page.Limit)
		}
		for _, bad := range []string{strings.Repeat("x", 2000), "order/\x00", "\xff"} {
			_, err := fx.Engine().List(ctx, saga.Filter{After: bad})
			require.ErrorContains(t, err, "is no cursor", "After %.20q", bad)
		}
	})
}

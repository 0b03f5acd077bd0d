package saga_test

import (
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestListIsInRowKeyOrder: List returns instances ordered by saga name,
// "/", then the URL-path-escaped id, byte by byte, as its doc says: over
// random ids of SQL, LIKE and escaping metacharacters and multi-byte
// UTF-8, for two saga types whose names sort differently with and without
// the "/" ("order" and "order-v2").
func TestListIsInRowKeyOrder(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 157))
		var defs []saga.Definition
		for _, name := range []string{"order", "order-v2"} {
			s := saga.New[orderState](name, nil)
			saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
			defs = append(defs, s)
		}
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Sagas = defs }})
		var want []string
		for i := range 20 {
			id := fmt.Sprint(randomID(rng, 1+rng.IntN(12)), i)
			fx.When(placed(id, 1))
			for _, name := range []string{"order", "order-v2"} {
				want = append(want, name+"/"+url.PathEscape(id))
			}
		}
		slices.Sort(want)
		infos, err := fx.Engine().List(t.Context(), saga.Filter{})
		require.NoError(t, err)
		got := make([]string, len(infos))
		for i, in := range infos {
			got[i] = in.Saga + "/" + url.PathEscape(in.ID)
		}
		require.Equal(t, want, got)
	})
}

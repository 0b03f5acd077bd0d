package saga_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
)

// TestOperationsOnIDsNoInstanceCanHave: the operations API (Show, Retry,
// Cancel, an Operator's Show and requests) answers ErrNotFound, saying
// why, for an instance id no instance can have (empty, past
// MaxInstanceIDLength, not valid text) or a saga type no saga can be
// named, on every store; List refuses such a type filter. None of them
// reaches the store with a key it would refuse.
func TestOperationsOnIDsNoInstanceCanHave(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		fx := newFixture(t, mk, setup{})
		// Ignored messages and instances exist, so a look-up has rows to
		// scan past.
		fx.Given(placed("1", 30))
		eng := fx.Engine()
		op, err := saga.NewOperator(&saga.OperatorConfig{Source: fx.Store(), Clock: fx.Clock()})
		require.NoError(t, err)
		seed := rand.Uint64()
		t.Logf("seed %d", seed)
		rng := rand.New(rand.NewPCG(seed, 3))
		badIDs := []string{"", strings.Repeat("a", saga.MaxInstanceIDLength+1+rng.IntN(5000)), "\xff" + randomText(rng, rng.IntN(20)), randomText(rng, rng.IntN(20)) + "\x00", "a\nb"}
		badTypes := []string{"", strings.Repeat("s", saga.MaxNameLength+1+rng.IntN(3000)), "\xfe\xff", "Orders", "a/b"}
		type call struct {
			name string
			do   func(typ, id string) error
		}
		calls := []call{
			{"Engine.Show", func(typ, id string) error { _, err := eng.Show(ctx, typ, id); return err }},
			{"Engine.Retry", func(typ, id string) error { return eng.Retry(ctx, typ, id) }},
			{"Engine.Cancel", func(typ, id string) error { return eng.Cancel(ctx, typ, id, "r") }},
			{"Operator.Show", func(typ, id string) error { _, err := op.Show(ctx, typ, id); return err }},
			{"Operator.RequestRetry", func(typ, id string) error { return errOf(op.RequestRetry(ctx, typ, id)) }},
			{"Operator.RequestCancel", func(typ, id string) error { return errOf(op.RequestCancel(ctx, typ, id, "r")) }},
		}
		for _, c := range calls {
			for _, id := range badIDs {
				err := c.do(orders, id)
				require.ErrorIs(t, err, saga.ErrNotFound, "%s(%q)", c.name, id)
				require.ErrorContains(t, err, "instance id", "%s says why", c.name)
			}
			for _, typ := range badTypes {
				err := c.do(typ, "1")
				require.ErrorIs(t, err, saga.ErrNotFound, "%s(type %q)", c.name, typ)
				require.ErrorContains(t, err, "saga: ", c.name)
			}
			require.NoError(t, func() error { _, err := eng.Show(ctx, orders, "1"); return err }(), "a real instance is still found")
		}
		for _, typ := range badTypes[1:] {
			_, err := eng.List(ctx, saga.Filter{Saga: typ})
			require.ErrorContains(t, err, "Filter.Saga names no saga type", "%q", typ)
		}
	})
}

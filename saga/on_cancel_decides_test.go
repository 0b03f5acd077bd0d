package saga_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestOnCancelCannotEndTheInstanceAnotherWay: Complete or Fail in an
// OnCancel handler is ignored: the instance ends cancelled, its history
// records no completion or failure (a note says why), and no completed or
// failed step is counted.
func TestOnCancelCannotEndTheInstanceAnotherWay(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		var defs []saga.Definition
		for _, name := range []string{"completes", "fails"} {
			s := saga.New[orderState](name, nil)
			saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
			saga.OnCancel(s, func(st *saga.Step[orderState], _ saga.Cancelled) error {
				if name == "completes" {
					st.Complete()
				} else {
					st.Fail("declined")
				}
				return nil
			})
			defs = append(defs, s)
		}
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Sagas = defs }})
		fx.When(placed("1", 1))
		for _, name := range []string{"completes", "fails"} {
			require.NoError(t, fx.Engine().Cancel(ctx, name, "1", "r"))
			fx.ExpectStatus(name, "1", saga.StatusCancelled)
			ks := kinds(fx.History(name, "1"))
			require.NotContains(t, ks, saga.KindCompleted, name)
			require.NotContains(t, ks, saga.KindFailed, name)
			require.Contains(t, ks, saga.KindNote, name)
			for _, outcome := range []string{"completed", "failed"} {
				require.Zero(t, testutil.ToFloat64(fx.Engine().Metrics().Steps.WithLabelValues(name, outcome)), "%s: %s", name, outcome)
			}
		}
	})
}

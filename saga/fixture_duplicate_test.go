package saga_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestFixtureDeliversAnEventGivenAgainUnderItsID: an event given to the
// fixture again under its id (sagatest.Event.ID), in the same When or a
// later one, is stored once and reaches the engine again, as a
// redelivered duplicate: the instance takes it once, its command is sent
// once, and the engine counts each copy in its Duplicates metric. The
// number of events and of copies is random.
func TestFixtureDeliversAnEventGivenAgainUnderItsID(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 227))
		fx := newFixture(t, mk, setup{})
		duplicates := fx.Engine().Metrics().Duplicates.WithLabelValues(orders)
		copies := 0
		for i := range 1 + rng.IntN(4) {
			id := fmt.Sprint("o", i)
			ev := placed(id, 1+rng.IntN(100))
			ev.ID = uuid.NewString()
			again := 1 + rng.IntN(3)
			if rng.IntN(2) == 0 {
				fx.When(slices.Repeat([]sagatest.Event{ev}, 1+again)...).ExpectCommands(ReserveStock{OrderID: id})
			} else {
				fx.When(ev).ExpectCommands(ReserveStock{OrderID: id})
				for range again {
					fx.When(ev).ExpectCommands()
				}
			}
			copies += again
			require.Equal(t, float64(copies), testutil.ToFloat64(duplicates), "each copy reached the engine as a duplicate")
			require.Equal(t, int64(1), fx.Instance(orders, id).Steps, "order %s: the instance took the event once", id)
			fx.ExpectStatus(orders, id, saga.StatusRunning)
		}
	})
}

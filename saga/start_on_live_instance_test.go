package saga_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestStartOnActsOnTheLiveInstance guards the promise in saga/doc.go (the
// correlation function): "StartOn starts an instance (or acts on the live
// one with that id); On acts only on live instances." Random start events (each on a stream of its own, so
// none is a redelivery) and On events over a few ids: the first start of an
// id starts it, every later start runs its handler on the live state, an On
// before any start is ignored, and each id records exactly one "started".
func TestStartOnActsOnTheLiveInstance(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 5))
		s := saga.New[orderState]("start_live", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
			st.State().Total += e.Total
			return nil
		})
		saga.On(s, byOrder[Ping], func(st *saga.Step[orderState], e Ping) error {
			st.State().Total += 1000 * e.N
			return nil
		})
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Sagas = []saga.Definition{s} }})
		want := map[string]int{}
		started := map[string]bool{}
		steps := map[string]int{}
		n := 40
		if mk != nil {
			n = 20
		}
		for i := range n {
			id := fmt.Sprint("o", rng.IntN(4))
			if rng.IntN(3) == 0 {
				fx.When(sagatest.Event{Stream: fmt.Sprint("ping-", i), Data: Ping{OrderID: id, N: 1}})
				if started[id] {
					want[id] += 1000
					steps[id]++
				}
			} else {
				total := 1 + rng.IntN(50)
				fx.When(sagatest.Event{Stream: fmt.Sprint("order-", id, "-", i), Data: OrderPlaced{OrderID: id, Total: total}})
				started[id] = true
				want[id] += total
				steps[id]++
			}
		}
		for id := range started {
			in := fx.Instance("start_live", id)
			require.Equal(t, saga.StatusRunning, in.Status, id)
			require.JSONEq(t, fmt.Sprintf(`{"order_id":"","total":%d}`, want[id]), string(in.State), id)
			require.Equal(t, 1, countKind(fx.History("start_live", id), saga.KindStarted), id)
			require.Equal(t, steps[id], countKind(fx.History("start_live", id), saga.KindStep), id)
		}
	})
}

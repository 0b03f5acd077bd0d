package saga_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// initState is a state whose zero value differs from a pre-filled one in
// every kind of field: a map, a slice and a number.
type initState struct {
	Seen  map[string]int `json:"seen"`
	Log   []string       `json:"log"`
	Limit int            `json:"limit"`
}

// TestConfigInitialIsWhatTheFirstStepSeesAndStores: Config.Initial
// returns the state of a new instance: the first step's handler finds it
// in Step.State (map, slice and number pre-filled, not S's zero value),
// and the instance stores it, with whatever the step changed, or as it
// is when the step changes nothing. Every instance starts from its own
// Initial: what one step changes is not seen by another instance. The
// initial values are random.
func TestConfigInitialIsWhatTheFirstStepSeesAndStores(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 3))
		seen := map[string]int{}
		for range 1 + rng.IntN(5) {
			seen[randomID(rng, 1+rng.IntN(12))] = rng.IntN(1000) - 500
		}
		var log []string
		for range 1 + rng.IntN(5) {
			log = append(log, randomID(rng, rng.IntN(12)))
		}
		limit := 1 + rng.IntN(1_000_000)
		initial := func() initState {
			return initState{Seen: maps.Clone(seen), Log: slices.Clone(log), Limit: limit}
		}
		want := initial()
		t.Logf("initial state %+v", want)

		var firstSeen []initState // the state each start step found
		s := saga.New[initState]("initial", &saga.Config[initState]{Initial: initial})
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[initState], e OrderPlaced) error {
			b, err := json.Marshal(st.State()) // a copy, before the step changes it
			if err != nil {
				return err
			}
			var got initState
			if err := json.Unmarshal(b, &got); err != nil {
				return err
			}
			firstSeen = append(firstSeen, got)
			if e.Total > 0 { // change it; a total of 0 leaves it as Initial made it
				st.State().Seen[e.OrderID] += e.Total
				st.State().Log = append(st.State().Log, e.OrderID)
				st.State().Limit -= e.Total
			}
			return nil
		})
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Sagas = []saga.Definition{s} }})
		total := 1 + rng.IntN(100)
		fx.When(placed("changed", total))
		fx.When(placed("untouched", 0))

		require.Len(t, firstSeen, 2)
		for i, got := range firstSeen {
			require.Equal(t, want, got, "start step %d found Config.Initial's state", i)
		}
		changed := initial()
		changed.Seen["changed"] += total
		changed.Log = append(changed.Log, "changed")
		changed.Limit -= total
		require.Equal(t, changed, sagatest.State[initState](fx, "initial", "changed"), "the stored state is Initial's, as the step changed it")
		require.Equal(t, want, sagatest.State[initState](fx, "initial", "untouched"), "a step that changes nothing stores Initial's state")
		require.Equal(t, fmt.Sprint(want), fmt.Sprint(initial()), "no step changed what Initial returns")
	})
}

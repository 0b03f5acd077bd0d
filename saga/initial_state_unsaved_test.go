package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// How an instance is saved before its first step commits; an
// OrderPlaced's Total picks the first two.
const (
	unsavedRetryAfter = iota + 1 // the start step asks for a retry
	unsavedError                 // the start step fails once
	unsavedParked                // the start step's read model is behind
	unsavedCancelled             // as parked, then an operator cancels it
	unsavedWays
)

// TestConfigInitialOutlivesASaveBeforeTheFirstStep: an instance saved
// before its first step committed (its start step retried after
// RetryAfter or an error, or parked at its gate) has no state yet, so
// the start step's next run, or the OnCancel handler of such an instance
// cancelled, finds Config.Initial's state, not S's zero value, and the
// instance stores it. The initial values and the order of the ways are
// random.
func TestConfigInitialOutlivesASaveBeforeTheFirstStep(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 211))
		seen := map[string]int{randomID(rng, 1+rng.IntN(12)): rng.IntN(1000) - 500}
		log := []string{randomID(rng, rng.IntN(12))}
		limit := 1 + rng.IntN(1_000_000)
		initial := func() initState {
			return initState{Seen: maps.Clone(seen), Log: slices.Clone(log), Limit: limit}
		}
		want := initial()

		runs := map[string][]initState{}      // the state each run of a start step found
		cancelled := map[string][]initState{} // the state each OnCancel found
		s := saga.New[initState]("initial_unsaved", &saga.Config[initState]{Initial: initial})
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[initState], e OrderPlaced) error {
			runs[e.OrderID] = append(runs[e.OrderID], clone(t, *st.State()))
			if len(runs[e.OrderID]) == 1 {
				switch e.Total {
				case unsavedRetryAfter:
					return saga.RetryAfter(time.Second)
				case unsavedError:
					return errors.New("the service is down for now")
				}
			}
			st.State().Log = append(st.State().Log, e.OrderID)
			return nil
		}, saga.Reads(summaryModel))
		saga.OnCancel(s, func(st *saga.Step[initState], _ saga.Cancelled) error {
			cancelled[st.ID()] = append(cancelled[st.ID()], clone(t, *st.State()))
			return nil
		})
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Sagas = []saga.Definition{s} }})

		for i, way := range rng.Perm(unsavedWays - 1) {
			way++
			id := fmt.Sprint("o", i)
			switch way {
			case unsavedRetryAfter, unsavedError:
				fx.When(placed(id, way))
				require.Equal(t, saga.StatusParked, fx.Instance(s.Name(), id).Status, "way %d", way)
				fx.Advance(time.Minute)
				require.Equal(t, []initState{want, want}, runs[id], "way %d: each run of the start step finds Initial's state", way)
			case unsavedParked:
				fx.HoldModel(summaryModel)
				fx.When(placed(id, 0))
				fx.ExpectParked(s.Name(), id, summaryModel)
				fx.ReleaseModel(summaryModel)
				require.Equal(t, []initState{want}, runs[id], "the parked start step finds Initial's state")
			case unsavedCancelled:
				fx.HoldModel(summaryModel)
				fx.When(placed(id, 0))
				fx.ExpectParked(s.Name(), id, summaryModel)
				require.NoError(t, fx.Engine().Cancel(context.Background(), s.Name(), id, "customer called"))
				fx.ReleaseModel(summaryModel)
				require.Empty(t, runs[id], "the cancelled start step never ran")
				require.Equal(t, []initState{want}, cancelled[id], "OnCancel finds Initial's state")
				require.Equal(t, want, sagatest.State[initState](fx, s.Name(), id), "the cancelled instance stores Initial's state")
				continue
			}
			stored := initial()
			stored.Log = append(stored.Log, id)
			require.Equal(t, stored, sagatest.State[initState](fx, s.Name(), id), "way %d: the stored state is Initial's, as the step changed it", way)
			fx.ExpectStatus(s.Name(), id, saga.StatusRunning)
		}
	})
}

// clone deep-copies a state, so what a step found is kept as it was.
func clone(t *testing.T, st initState) initState {
	t.Helper()
	b, err := json.Marshal(st)
	require.NoError(t, err)
	var out initState
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}

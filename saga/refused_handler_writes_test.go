package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestRefusedStepKeepsNothingItsHandlerWrote: a start step whose handler
// adds one to a counter through its unit's rows and then sends a command
// no handler handles is refused: its instance fails (counted once as
// no_command_handler) with the counter as it was, and the handler ran
// once. Once the command has a handler, Engine.Retry runs the step again
// and the counter ends exactly one up. Counters start at random values.
func TestRefusedStepKeepsNothingItsHandlerWrote(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 223))
		ctx := context.Background()
		const table = "counters"
		handlers := catalog{}
		runs := map[string]int{}
		s := saga.New[orderState]("refused_writes", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
			runs[e.OrderID]++
			eu, _ := events.UnitFromContext(st.Context())
			u, ok := eu.(feed.Unit)
			if !ok {
				return saga.Permanent(errors.New("the step's context carries no feed.Unit"))
			}
			row, _, err := u.Rows().Get(st.Context(), "test", table, e.OrderID, feed.LockUpdate)
			if err != nil {
				return err
			}
			var n int
			if err := json.Unmarshal(row.Value, &n); err != nil {
				return err
			}
			if err := u.Rows().Put(st.Context(), "test", table, e.OrderID, json.RawMessage(strconv.Itoa(n+1)), st.Token()); err != nil {
				return err
			}
			return st.Send(ReserveStock{OrderID: e.OrderID})
		})
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) {
			c.Sagas = []saga.Definition{s}
			c.Commands = handlers
		}})
		counter := func(id string) int {
			t.Helper()
			row, found, err := fx.Store().Rows().Get(ctx, "test", table, id, feed.LockNone)
			require.NoError(t, err)
			require.True(t, found)
			var n int
			require.NoError(t, json.Unmarshal(row.Value, &n))
			return n
		}

		start := map[string]int{}
		for i := range 1 + rng.IntN(4) {
			id := fmt.Sprint("o", i)
			start[id] = rng.IntN(1000)
			require.NoError(t, drive.Unit(ctx, fx.Store(), 0, func(ctx context.Context) error {
				eu, _ := events.UnitFromContext(ctx)
				u, ok := eu.(feed.Unit)
				if !ok {
					return errors.New("the unit is no feed.Unit")
				}
				return u.Rows().Put(ctx, "test", table, id, json.RawMessage(strconv.Itoa(start[id])), events.Token{})
			}))
			fx.When(placed(id, 1)).ExpectCommands()
			fx.ExpectStatus(s.Name(), id, saga.StatusFailed)
			require.Contains(t, fx.Instance(s.Name(), id).Reason, saga.ErrNoCommandHandler.Error())
			require.Equal(t, start[id], counter(id), "%s: the refused step's handler wrote nothing that stayed", id)
			require.Equal(t, 1, runs[id], "%s: one handler run for the one attempt", id)
		}
		require.Equal(t, float64(len(start)), testutil.ToFloat64(fx.Engine().Metrics().BadInput.WithLabelValues("no_command_handler")),
			"one count per refused step")

		handlers["stock.reserve"] = true
		for id, n := range start {
			require.NoError(t, fx.Engine().Retry(ctx, s.Name(), id))
			fx.Advance(0).ExpectCommands(ReserveStock{OrderID: id})
			fx.ExpectStatus(s.Name(), id, saga.StatusRunning)
			require.Equal(t, n+1, counter(id), "%s: the retried step took effect once", id)
			require.Equal(t, 2, runs[id], "%s", id)
		}
	})
}

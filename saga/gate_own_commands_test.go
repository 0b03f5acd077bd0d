package saga_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
)

// TestGatedStepWaitsForTheInstancesOwnCommands: a gated step's causal
// token is the later of its event's token and what the instance produced.
// The event here was appended before the instance's first step sent its
// commands, so a read model that has reached the event but not the last
// of those commands is behind: the step parks, and runs (at a token
// covering the commands) only once the model has caught up with them.
func TestGatedStepWaitsForTheInstancesOwnCommands(t *testing.T) {
	t.Parallel()
	forEachSeed(t, 10, 3, func(t *testing.T, mk storeMaker, seed uint64) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 3))
		ctx := context.Background()
		sends := 1 + rng.IntN(5)
		s := saga.New[orderState]("own_commands", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
			for i := range sends {
				if err := st.Send(NotifyCustomer{OrderID: e.OrderID, Text: fmt.Sprint(i)}); err != nil {
					return err
				}
			}
			return nil
		})
		var ranAt []events.Token
		saga.On(s, byOrder[StockReserved], func(st *saga.Step[orderState], _ StockReserved) error {
			ranAt = append(ranAt, st.Token())
			return nil
		}, saga.Reads(summaryModel))
		tracker, err := consistency.NewTracker(&consistency.TrackerConfig{})
		require.NoError(t, err)
		store := newStore(t, mk)
		eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{s}, Tracker: tracker, GateTimeout: time.Nanosecond})
		require.NoError(t, err)
		b := bare{store: store, engine: eng}
		instance := func() saga.Info {
			tl, err := eng.Show(ctx, "own_commands", "1")
			require.NoError(t, err)
			return tl.Info
		}

		start := b.append(t, "order-1", OrderPlaced{OrderID: "1"})
		reserved := b.append(t, "order-1", StockReserved{OrderID: "1"})
		b.deliver(t, start)
		info := instance()
		require.True(t, info.Token.After(reserved.Token), "the commands came after the event")

		// The model reaches the event, or a random point short of
		// the instance's last command.
		tracker.Advance(summaryModel, reserved.Token)
		b.deliver(t, reserved)
		for pos := reserved.Token; ; {
			require.Empty(t, ranAt, "seed %d: the step ran with the model at %s, before the instance's commands (%s)", seed, pos, info.Token)
			require.Equal(t, saga.StatusParked, instance().Status)
			next := b.commandAfter(t, pos)
			if !next.Before(info.Token) || rng.IntN(2) == 0 {
				break
			}
			pos = next
			tracker.Advance(summaryModel, pos)
			_, err := eng.RunParked(ctx)
			require.NoError(t, err)
		}
		tracker.Advance(summaryModel, info.Token)
		n, err := eng.RunParked(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.Len(t, ranAt, 1)
		require.False(t, ranAt[0].Before(info.Token), "the step's token covers the instance's commands")
	})
}

// commandAfter returns the token of the instance's first command after
// pos. It reads the command stream, not the feed: on PostgreSQL the feed
// shows nothing past the read horizon, which any open transaction in the
// cluster (another test's) holds back.
func (b bare) commandAfter(t *testing.T, pos events.Token) events.Token {
	t.Helper()
	envs, err := b.store.ReadStream(context.Background(), command.StreamFor("customer.notify", "1"), 1, 100)
	require.NoError(t, err)
	for _, env := range envs {
		if env.Token.After(pos) {
			return env.Token
		}
	}
	require.FailNow(t, "no command after "+pos.String())
	return events.Token{}
}

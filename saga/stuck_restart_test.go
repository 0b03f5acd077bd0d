package saga_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/internal/clocktest"
	"github.com/converge-es/converge/saga"
)

// TestRestartReportsNoCaughtUpStepStuck: a step parked for its read model
// longer than StuckAfter, whose model caught up while no process ran, is
// not reported stuck by the first pass of a process that starts then
// (its Tracker has read no position yet): the pass reads the position
// and runs the step. A model still behind is reported stuck as before.
func TestRestartReportsNoCaughtUpStepStuck(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		store := newStore(t, mk)
		clock := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		s := saga.New[interruptedState]("gated", nil)
		saga.StartOn(s, func(e OrderPlaced, _ events.Envelope) string { return e.OrderID },
			func(st *saga.Step[interruptedState], _ OrderPlaced) error {
				st.State().Runs++
				return nil
			}, saga.Reads("late_model", "caught_up_model"))
		engine := func(tr *consistency.Tracker) bare {
			t.Helper()
			eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{s}, Tracker: tr, Clock: clock, GateTimeout: 10 * time.Millisecond})
			require.NoError(t, err)
			return bare{store: store, engine: eng}
		}
		// The first process parks both steps: no model has moved.
		trackerOf := func() *consistency.Tracker {
			tr, err := consistency.NewTracker(&consistency.TrackerConfig{Positions: store.Checkpoints()})
			require.NoError(t, err)
			return tr
		}
		first := engine(trackerOf())
		caught := first.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 5})
		first.deliver(t, caught)
		require.Equal(t, saga.StatusParked, first.stateInfo(t, "gated", "1").Status)

		// While nothing runs, the models reach the event, and time passes.
		cps := store.Checkpoints()
		for _, m := range []string{"late_model", "caught_up_model"} {
			l, err := cps.Acquire(ctx, m, "test", time.Minute)
			require.NoError(t, err)
			require.NoError(t, cps.Advance(ctx, l, caught.Token))
			require.NoError(t, cps.Release(ctx, l))
		}
		clock.Advance(saga.DefaultStuckAfter + time.Minute)

		// A process whose reads of the positions fail cannot tell: it
		// reports nothing stuck, and runs nothing.
		blind, err := consistency.NewTracker(&consistency.TrackerConfig{Positions: unreadablePositions{}, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		ran, err := engine(blind).engine.RunParked(ctx)
		require.NoError(t, err)
		require.Zero(t, ran)
		require.False(t, first.stateInfo(t, "gated", "1").Stuck, "stuck on positions it could not read")

		second := engine(trackerOf())
		ran, err = second.engine.RunParked(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, ran, "the step runs on the positions the pass read")
		info := second.stateInfo(t, "gated", "1")
		require.False(t, info.Stuck, "a caught-up step reported stuck")
		require.Equal(t, saga.StatusRunning, info.Status)
		require.Zero(t, countKind(second.timeline(t, "gated", "1"), saga.KindStuck))

		// A step whose model is really behind is still reported stuck.
		behind := second.append(t, "order-2", OrderPlaced{OrderID: "2", Total: 5})
		second.deliver(t, behind)
		clock.Advance(saga.DefaultStuckAfter + time.Minute)
		_, err = engine(trackerOf()).engine.RunParked(ctx)
		require.NoError(t, err)
		require.True(t, second.stateInfo(t, "gated", "2").Stuck)

		// A process started after the step was reported stuck counts it in
		// its gauge all the same, and no more once the step ran.
		tr := trackerOf()
		fourth := engine(tr)
		gauge := fourth.engine.Metrics().Stuck.WithLabelValues("gated")
		_, err = fourth.engine.RunParked(ctx)
		require.NoError(t, err)
		require.Equal(t, 1.0, testutil.ToFloat64(gauge), "a stuck step reported by an earlier process")
		tr.Advance("late_model", behind.Token)
		tr.Advance("caught_up_model", behind.Token)
		ran, err = fourth.engine.RunParked(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, ran)
		require.Zero(t, testutil.ToFloat64(gauge), "the stuck step ran")
	})
}

func (b bare) timeline(t *testing.T, sagaName, id string) saga.Timeline {
	t.Helper()
	tl, err := b.engine.Show(context.Background(), sagaName, id)
	require.NoError(t, err)
	return tl
}

func (b bare) stateInfo(t *testing.T, sagaName, id string) saga.Info {
	t.Helper()
	return b.timeline(t, sagaName, id).Info
}

// unreadablePositions is a checkpoint store that does not answer.
type unreadablePositions struct{}

func (unreadablePositions) Position(context.Context, string) (events.Token, error) {
	return events.Token{}, errors.New("connection refused")
}

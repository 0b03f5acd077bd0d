package saga_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/internal/clocktest"
	"github.com/converge-es/converge/saga"
)

// standingBy is EngineConfig.Assigned of a process that stands by for
// another build's (its sagas' processor delivers nothing).
func standingBy() (bool, <-chan struct{}) { return false, nil }

// rdBuild is one build of the "rd_ship" saga type. Both builds start on
// OrderPlaced and take StockReserved (whose first attempt fails with a
// RetryAfter, parking the step, as a transient error would). Only the
// newer build (newer == true) handles PaymentCharged, and only it
// schedules and handles the "remind" timer; the StateVersion is the same
// in both (adding a handler or a timeout needs no new state shape).
func rdBuild(newer bool, ran map[string]int, stockAttempts *int) *saga.Saga[orderState] {
	s := saga.New[orderState]("rd_ship", nil)
	saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
		st.State().OrderID = e.OrderID
		if newer {
			st.Schedule("remind", time.Minute)
		}
		return nil
	})
	saga.On(s, byOrder[StockReserved], func(st *saga.Step[orderState], _ StockReserved) error {
		ran["stock.reserved"]++
		*stockAttempts++
		if *stockAttempts == 1 {
			return saga.RetryAfter(10 * time.Minute)
		}
		return nil
	})
	if newer {
		saga.On(s, byOrder[PaymentCharged], func(st *saga.Step[orderState], _ PaymentCharged) error {
			ran["payment.charged"]++
			return st.Send(ShipOrder{OrderID: st.ID()})
		})
		saga.OnTimeout(s, "remind", func(st *saga.Step[orderState], _ saga.Timeout) error {
			ran["remind"]++
			return nil
		})
	}
	return s
}

// TestStandingByDriverLeavesTheNewerBuildsMessages: during a rolling
// deploy both builds run Engine.Start, so both run the parked-step
// driver, and the newer build's process takes the feed's messages; an
// instance blocked behind a retried step queues them. When the retry time
// comes, the older build's driver, standing by (EngineConfig.Assigned),
// runs nothing even when it passes first: it would have ignored the
// PaymentCharged it has no handler for and recorded the newer build's
// timer firing as having no OnTimeout handler, both lost for good. The
// newer build's driver runs them.
func TestStandingByDriverLeavesTheNewerBuildsMessages(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		clock := clocktest.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
		store := newStore(t, mk)
		ranN, ranO := map[string]int{}, map[string]int{}
		stockAttempts := 0
		engN, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{rdBuild(true, ranN, &stockAttempts)}, Clock: clock})
		require.NoError(t, err)
		engO, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{rdBuild(false, ranO, &stockAttempts)}, Clock: clock, Assigned: standingBy})
		require.NoError(t, err)
		bN := bare{store: store, engine: engN}

		// The newer build holds the partition: it takes every feed message.
		var pos events.Token
		feedToNewer := func() {
			handleNew(t, store, &pos, func(env events.Envelope) error { bN.deliver(t, env); return nil })
		}
		bN.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 3})
		bN.append(t, "order-1", StockReserved{OrderID: "1"})
		feedToNewer()
		require.Equal(t, saga.StatusParked, bN.stateInfo(t, "rd_ship", "1").Status, "the step waits for its retry")

		// The payment arrives and the timer comes due while it waits: both
		// queue behind the parked step.
		bN.append(t, "order-1", PaymentCharged{OrderID: "1"})
		clock.Advance(2 * time.Minute)
		n, err := engN.FireDue(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		feedToNewer()
		require.Equal(t, int64(2), bN.stateInfo(t, "rd_ship", "1").Queued)

		// The retry time comes; the older build's driver passes first.
		clock.Advance(10 * time.Minute)
		n, err = engO.RunParked(ctx)
		require.NoError(t, err)
		require.Zero(t, n, "a standing-by driver ran a step")
		// Then the newer build's driver, and its timer loop.
		_, err = engN.RunParked(ctx)
		require.NoError(t, err)
		_, err = engN.FireDue(ctx)
		require.NoError(t, err)
		feedToNewer()
		_, err = engN.RunParked(ctx)
		require.NoError(t, err)

		require.Zero(t, ranO["stock.reserved"], "the older build's driver ran the retried step")
		tl := bN.timeline(t, "rd_ship", "1")
		for _, h := range tl.History {
			require.NotContains(t, []string{saga.KindIgnored, saga.KindNoTimeoutHandler}, h.Kind, "%s %s: %s", h.Kind, h.EventType, h.Detail)
		}
		require.Equal(t, 1, ranN["payment.charged"], "the newer build's On(PaymentCharged) never ran: the older build's driver dropped the message")
		require.Equal(t, 1, ranN["remind"], "the newer build's OnTimeout(remind) never ran: the older build's driver dropped the firing")
	})
}

// TestStandingByDriverLeavesCancelRequestsToTheNewerBuild: the newer
// build adds an OnCancel handler that runs the compensations (same
// StateVersion). An operator asks for a cancel (`converge sagas cancel`,
// Operator.RequestCancel) while both builds run. The older build's
// driver, standing by, leaves the request even when it passes first (it
// would have ended the instance without the OnCancel handler it lacks,
// and the compensation would never be sent): the newer build's driver
// carries it out, compensation included.
func TestStandingByDriverLeavesCancelRequestsToTheNewerBuild(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		store := newStore(t, mk)
		build := func(newer bool) *saga.Saga[orderState] {
			s := saga.New[orderState]("rd_cancel", nil)
			saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
				if err := st.Compensate(ReleaseStock{OrderID: e.OrderID}); err != nil {
					return err
				}
				return st.Send(ReserveStock{OrderID: e.OrderID})
			})
			if newer {
				saga.OnCancel(s, func(st *saga.Step[orderState], _ saga.Cancelled) error {
					st.RunCompensations()
					return nil
				})
			}
			return s
		}
		engN, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{build(true)}})
		require.NoError(t, err)
		engO, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{build(false)}, Assigned: standingBy})
		require.NoError(t, err)
		bN := bare{store: store, engine: engN}
		bN.deliver(t, bN.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 3}))

		op, err := saga.NewOperator(&saga.OperatorConfig{Source: store})
		require.NoError(t, err)
		_, err = op.RequestCancel(ctx, "rd_cancel", "1", "customer called")
		require.NoError(t, err)
		// The older build's driver passes first, then the newer one's.
		_, err = engO.RunParked(ctx)
		require.NoError(t, err)
		_, err = engN.RunParked(ctx)
		require.NoError(t, err)

		tl := bN.timeline(t, "rd_cancel", "1")
		require.Equal(t, saga.StatusCancelled, tl.Info.Status)
		require.Len(t, bN.commandIDs(t)["stock.release"], 1, "the newer build's OnCancel (RunCompensations) never ran: the older build cancelled without it")
	})
}

// TestDriverPassesOnlyWhileAssigned: the driver started by Start makes no
// pass while EngineConfig.Assigned says no, however often its sweep
// ticks, and passes once the channel Assigned returned closes and the
// process is assigned.
func TestDriverPassesOnlyWhileAssigned(t *testing.T) {
	t.Parallel()
	var assigned atomic.Bool
	changed := make(chan struct{})
	eng, err := saga.NewEngine(&saga.EngineConfig{
		Store: newStore(t, nil), Sagas: []saga.Definition{rdBuild(false, map[string]int{}, new(int))},
		Assigned: func() (bool, <-chan struct{}) { return assigned.Load(), changed },
	})
	require.NoError(t, err)
	ticks := make(chan time.Time)
	saga.SetSweepTicks(eng, ticks)
	passes := passSignals(eng)
	require.NoError(t, eng.Start(t.Context()))
	t.Cleanup(func() { _ = eng.Stop(context.Background()) })

	// Each send returns once the driver took the tick; the third only once
	// it has looked at Assigned again after the second.
	for range 3 {
		select {
		case ticks <- time.Now():
		case <-time.After(10 * time.Second):
			t.Fatal("the driver stopped taking sweep ticks")
		}
	}
	select {
	case <-passes:
		t.Fatal("the driver made a pass while not assigned")
	default:
	}

	assigned.Store(true)
	close(changed)
	select {
	case <-passes:
	case <-time.After(10 * time.Second):
		t.Fatal("no pass after the process was assigned")
	}
}

// TestStandingByEngineReportsNoStaleStuckCount: an engine that stands by
// (EngineConfig.Assigned says no) makes no pass, so it reports no stuck
// count of its own: 0, whichever engine then cancels the instance it had
// counted stuck. It used to report its last pass's count for as long as
// it stood by, which kept a max() alert firing.
func TestStandingByEngineReportsNoStaleStuckCount(t *testing.T) {
	t.Parallel()
	for _, who := range []string{"own", "other"} {
		t.Run(who, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			store := newStore(t, nil)
			clock := clocktest.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			tracker, err := consistency.NewTracker(&consistency.TrackerConfig{Positions: store.Checkpoints()})
			require.NoError(t, err)
			def := func() saga.Definition {
				s := saga.New[orderState]("standby_gauge", nil)
				saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil }, saga.Reads(summaryModel))
				return s
			}
			var assigned atomic.Bool
			assigned.Store(true)
			eng, err := saga.NewEngine(&saga.EngineConfig{
				Store: store, Sagas: []saga.Definition{def()}, Tracker: tracker, Clock: clock, GateTimeout: time.Nanosecond,
				Assigned: func() (bool, <-chan struct{}) { return assigned.Load(), nil },
			})
			require.NoError(t, err)
			other, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{def()}, Tracker: tracker, Clock: clock, GateTimeout: time.Nanosecond})
			require.NoError(t, err)
			b := bare{store: store, engine: eng}
			b.deliver(t, b.append(t, "order-1", OrderPlaced{OrderID: "1"}))
			clock.Advance(saga.DefaultStuckAfter + time.Minute)

			ticks := make(chan time.Time)
			saga.SetSweepTicks(eng, ticks)
			passes := passSignals(eng)
			require.NoError(t, eng.Start(ctx))
			defer func() { _ = eng.Stop(context.Background()) }()
			<-passes
			gauge := eng.Metrics().Stuck.WithLabelValues("standby_gauge")
			require.Equal(t, 1.0, testutil.ToFloat64(gauge))

			// The process stands by from now on.
			assigned.Store(false)
			tick := func() {
				select {
				case ticks <- time.Now():
				case <-ctx.Done():
					t.Fatal("the driver stopped taking ticks")
				}
			}
			tick()
			if who == "own" {
				require.NoError(t, eng.Cancel(ctx, "standby_gauge", "1", "review"))
			} else {
				require.NoError(t, other.Cancel(ctx, "standby_gauge", "1", "review"))
			}
			require.Equal(t, saga.StatusCancelled, b.stateInfo(t, "standby_gauge", "1").Status)
			for range 5 {
				tick()
			}
			require.Equal(t, 0.0, testutil.ToFloat64(gauge),
				"the instance is cancelled (%s engine), yet the standing-by engine's stuck gauge still counts it after 5 sweeps", who)
		})
	}
}

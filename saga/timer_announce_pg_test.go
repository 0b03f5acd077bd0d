package saga_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
)

// TestTimerScheduledByAResumedStepWakesOtherProcesses: a parked step that
// the driver resumes and that schedules a timer, appending nothing and
// moving no checkpoint, still wakes the other processes' timer loops: a
// process whose safety poll is an hour away fires the timer when it is
// due, though the process that scheduled it runs no timer loop.
func TestTimerScheduledByAResumedStepWakesOtherProcesses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, nil)
	reg := registry()
	open := func() *pgstore.Store {
		st, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, Registry: reg})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		require.NoError(t, st.WaitPushHealthy(wctx, true))
		return st
	}
	stA, stB := open(), open()

	var attempts atomic.Int32
	def := func() saga.Definition {
		s := saga.New[orderState]("pushed", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], _ OrderPlaced) error {
			if attempts.Add(1) == 1 {
				return saga.RetryAfter(time.Millisecond) // parked, for the driver
			}
			st.Schedule("t", 300*time.Millisecond)
			return nil
		})
		saga.OnTimeout(s, "t", func(*saga.Step[orderState], saga.Timeout) error { return nil })
		return s
	}
	// A is never started: only its RunParked runs the step.
	a, err := saga.NewEngine(&saga.EngineConfig{Store: stA, Sagas: []saga.Definition{def()}})
	require.NoError(t, err)
	// B runs another saga type, so its driver leaves the parked step to A;
	// its timer loop fires every timer of the store all the same.
	other := saga.New[orderState]("other", nil)
	saga.StartOn(other, byOrder[Ping], func(*saga.Step[orderState], Ping) error { return nil })
	b, err := saga.NewEngine(&saga.EngineConfig{Store: stB, Sagas: []saga.Definition{other}, TimerSafetyInterval: time.Hour, SweepInterval: time.Hour})
	require.NoError(t, err)
	// settled closes once B's timer loop goes to sleep on a feed wake-up
	// taken after the append below reached B's store: B has looked at the
	// timer rows since the append, and only a new notification wakes it.
	var appended atomic.Pointer[<-chan struct{}]
	settled := make(chan struct{})
	var once sync.Once
	saga.SetTimerSleepHook(b, func(feedWake <-chan struct{}) {
		if w := appended.Load(); w != nil && closed(*w) && !closed(feedWake) {
			once.Do(func() { close(settled) })
		}
	})
	require.NoError(t, b.Start(ctx))
	t.Cleanup(func() { require.NoError(t, b.Stop(context.Background())) })

	w := stB.Wake()
	appended.Store(&w)
	res, err := stA.Append(ctx, "order-1", events.AnyVersion, events.Event{Data: OrderPlaced{OrderID: "1"}})
	require.NoError(t, err)
	envs, err := stA.ReadStream(ctx, "order-1", res.LastVersion, 1)
	require.NoError(t, err)
	require.NoError(t, drive.Unit(ctx, stA, 0, func(ctx context.Context) error { return a.Handle(ctx, envs[0]) }))
	// B's timer loop looks at the timer rows once the append wakes it,
	// finds none, and then sleeps until its safety poll unless something
	// wakes it.
	select {
	case <-settled:
	case <-time.After(10 * time.Second):
		t.Fatal("B's timer loop did not settle after the append")
	}
	ran, err := a.RunParked(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, ran, "A's driver ran the parked step, which scheduled the timer")
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(b.Metrics().TimersFired.WithLabelValues("pushed")) == 1
	}, 10*time.Second, 10*time.Millisecond, "B did not fire the timer A's resumed step scheduled")
}

// closed reports whether c is closed, without waiting.
func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

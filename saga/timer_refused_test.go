package saga_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// longID is the instance id of an order whose id starts with "L": its
// timer-fired event is over 512 bytes (JSON writes each '<' as \u003c),
// its own events are not.
func longID(order string) string {
	if strings.HasPrefix(order, "L") {
		return strings.Repeat("<", 100) + order
	}
	return order
}

func byLongID[E interface{ order() string }](e E, _ events.Envelope) string { return longID(e.order()) }

// timerSaga schedules timer "t" Ping.N minutes after its start, and
// completes when it fires. A PaymentDeclined before start+2h is retried
// at +2h, blocking the instance until then.
func timerSaga() *saga.Saga[orderState] {
	s := saga.New[orderState]("tm", nil)
	saga.StartOn(s, byLongID[Ping], func(st *saga.Step[orderState], e Ping) error {
		st.Schedule("t", time.Duration(e.N)*time.Minute)
		return nil
	})
	saga.On(s, byLongID[PaymentDeclined], func(st *saga.Step[orderState], _ PaymentDeclined) error {
		if st.Now().Before(sagatest.DefaultStart.Add(2 * time.Hour)) {
			return saga.RetryAfter(2 * time.Hour)
		}
		st.Note("blocker ran")
		return nil
	})
	saga.OnTimeout(s, "t", func(st *saga.Step[orderState], _ saga.Timeout) error {
		st.Complete()
		return nil
	})
	return s
}

// TestScheduleOfATimerTheStoreWouldRefuseRefusesTheStep: on a store whose
// payload limit is below a timer's timer-fired event, the step scheduling
// the timer is refused, as one sending such a command would be; it is not
// accepted only to have the timer refused, for ever, when it is due.
// Another instance's timer fires as usual.
func TestScheduleOfATimerTheStoreWouldRefuseRefusesTheStep(t *testing.T) {
	t.Parallel()
	reg := registry()
	ms, err := memstore.New(&memstore.Config{Registry: reg, Limits: events.Limits{MaxPayloadBytes: 512}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ms.Close() })
	fx := sagatest.New(t, &sagatest.Config{Registry: reg, Sagas: []saga.Definition{timerSaga()}, Store: ms})

	long := longID("L0")
	fx.When(sagatest.Event{Stream: "order-long", Data: Ping{OrderID: "L0", N: 10}})
	info := fx.Instance("tm", long)
	require.Equal(t, saga.StatusFailed, info.Status)
	require.Contains(t, info.Reason, `Schedule("t")`)
	require.Contains(t, info.Reason, "refused by the store")
	require.Empty(t, info.Timers, "nothing of the refused step is kept")

	fx.When(sagatest.Event{Stream: "order-short", Data: Ping{OrderID: "short", N: 20}})
	fx.ExpectStatus("tm", "short", saga.StatusRunning)
	fx.Advance(time.Hour)
	fx.ExpectStatus("tm", "short", saga.StatusCompleted)
	_, pending, err := fx.Engine().NextTimer(context.Background())
	require.NoError(t, err)
	require.False(t, pending)
}

// strictAppends refuses appends over limits stricter than the ones the
// engine reads from the store: a store whose limits were lowered after
// timers were scheduled (or timers scheduled by a build that did not
// check them).
type strictAppends struct {
	saga.Store
	limits events.Limits
}

func (s strictAppends) Append(ctx context.Context, stream string, exp events.ExpectedVersion, evs ...events.Event) (events.AppendResult, error) {
	if _, err := events.Prepare(s.Registry(), s.limits, stream, exp, evs); err != nil {
		return events.AppendResult{}, err
	}
	return s.Store.Append(ctx, stream, exp, evs...)
}

// TestTimerWhoseEventTheStoreRefusesBlocksNoOther: timers, due in a
// random order, some of them of instances whose timer-fired event the
// store refuses. One pass fires every due timer: each refused one runs
// from its instance's rows instead (at once, or behind the step that
// blocks its instance), recorded, logged and counted, and holds up no
// timer of another instance. Every timeout runs once.
func TestTimerWhoseEventTheStoreRefusesBlocksNoOther(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		rng := rand.New(rand.NewPCG(seed, 3))
		inner := newStore(t, mk)
		store := strictAppends{Store: inner, limits: events.Limits{MaxPayloadBytes: 512}}
		fx := sagatest.New(t, &sagatest.Config{Registry: inner.Registry(), Sagas: []saga.Definition{timerSaga()}, Store: store})
		type inst struct {
			id             string
			refused, block bool
		}
		var all []inst
		refused := 0
		for i := range 12 {
			in := inst{refused: rng.IntN(2) == 0, block: rng.IntN(3) == 0}
			if i < 4 { // each kind at least once
				in.refused, in.block = i&1 == 1, i&2 == 2
			}
			order := fmt.Sprint("S", i)
			if in.refused {
				order = fmt.Sprint("L", i)
				refused++
			}
			in.id = longID(order)
			all = append(all, in)
			stream := fmt.Sprint("order-", i)
			fx.When(sagatest.Event{Stream: stream, Data: Ping{OrderID: order, N: 1 + rng.IntN(50)}})
			if in.block {
				fx.When(sagatest.Event{Stream: stream, Data: PaymentDeclined{OrderID: order}})
				fx.ExpectStatus("tm", in.id, saga.StatusParked)
			}
		}
		fx.Clock().Advance(time.Hour)
		n, err := fx.Engine().FireDue(ctx)
		require.NoError(t, err)
		require.Equal(t, len(all), n, "every due timer fired in one pass")
		n, err = fx.Engine().FireDue(ctx)
		require.NoError(t, err)
		require.Zero(t, n, "and none is left to fire again")
		require.InDelta(t, float64(refused), testutil.ToFloat64(fx.Engine().Metrics().BadInput.WithLabelValues("timer_event_refused")), 0)

		require.NoError(t, fx.Settle())
		for _, in := range all {
			want := saga.StatusCompleted
			if in.block {
				want = saga.StatusParked // behind the blocking step, till +2h
			}
			fx.ExpectStatus("tm", in.id, want)
		}
		fx.Advance(2 * time.Hour)
		for _, in := range all {
			tl := fx.History("tm", in.id)
			require.Equal(t, saga.StatusCompleted, tl.Info.Status, "instance %s (refused %v, blocked %v)", in.id, in.refused, in.block)
			ks := kinds(tl)
			require.Equal(t, 1, count(ks, saga.KindTimerFired), "its timeout ran once")
			require.Equal(t, map[bool]int{false: 0, true: 1}[in.refused], count(ks, saga.KindTimerRefused))
			if in.block {
				require.Less(t, indexOf(ks, saga.KindNote), indexOf(ks, saga.KindTimerFired), "the timeout ran behind the step blocking it")
			}
		}
	})
}

func count(ks []string, k string) int {
	n := 0
	for _, x := range ks {
		if x == k {
			n++
		}
	}
	return n
}

// flakyAppends fails the appends of events correlated to down, as a store
// that cannot take them for now would.
type flakyAppends struct {
	saga.Store
	down *string
}

func (s flakyAppends) Append(ctx context.Context, stream string, exp events.ExpectedVersion, evs ...events.Event) (events.AppendResult, error) {
	if *s.down != "" && len(evs) > 0 && evs[0].Metadata.CorrelationID == *s.down {
		return events.AppendResult{}, errors.New("connection reset by peer")
	}
	return s.Store.Append(ctx, stream, exp, evs...)
}

// TestTimerThatFailsToFireHoldsUpNoOther: the earliest due timer cannot
// fire for now. The pass fires every other due timer, then reports the
// failure; the timer stays and fires at a pass once the store takes it.
func TestTimerThatFailsToFireHoldsUpNoOther(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	inner := newStore(t, nil)
	down := ""
	fx := sagatest.New(t, &sagatest.Config{Registry: inner.Registry(), Sagas: []saga.Definition{timerSaga()}, Store: flakyAppends{Store: inner, down: &down}})
	for i := range 5 {
		fx.When(sagatest.Event{Stream: fmt.Sprint("order-", i), Data: Ping{OrderID: fmt.Sprint("S", i), N: 1 + i}})
	}
	down = "S0" // due first
	fx.Clock().Advance(time.Hour)
	n, err := fx.Engine().FireDue(ctx)
	require.ErrorContains(t, err, "connection reset by peer")
	require.Equal(t, 4, n, "the timers due after it fired")
	next, pending, err := fx.Engine().NextTimer(ctx)
	require.NoError(t, err)
	require.True(t, pending)
	require.True(t, next.Equal(sagatest.DefaultStart.Add(time.Minute)), "its timer stays, for the next pass: %s", next)

	down = ""
	n, err = fx.Engine().FireDue(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n, "only its timer was left")
	require.NoError(t, fx.Settle())
	for i := range 5 {
		fx.ExpectStatus("tm", fmt.Sprint("S", i), saga.StatusCompleted)
	}
}

package saga_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// storeMaker returns the store a test runs on; nil means the fixture's
// in-memory default.
type storeMaker func(t *testing.T, reg *events.Registry) saga.Store

// storeMakers are the stores every scenario runs on (pg_test.go adds
// PostgreSQL).
var storeMakers = map[string]storeMaker{"memory": nil}

// allStores runs every scenario on every store variant. Without it, the
// variants in sometimesStores run only the scenarios in alwaysOnEvery:
// they repeat the whole suite on PostgreSQL for one property each, which
// doubled the test command's time on a slow machine.
var allStores = flag.Bool("saga.all-stores", false, "run every saga scenario on every store variant, the one-connection simple-protocol PostgreSQL pool included")

// sometimesStores are the variants that run every scenario only with
// -saga.all-stores.
var sometimesStores = map[string]bool{"postgres_one_simple_connection": true}

// alwaysOnEvery are the scenarios that run on every variant whatever the
// flag says: the ones that hold a unit's connection while doing something
// else (a gate, a parked step, an operator request, a timer), where a
// second connection or a binary-only value once failed the engine, and
// one of each kind of end-to-end run.
var alwaysOnEvery = map[string]bool{
	"TestEndToEndOverWatermill":                    true,
	"TestGatedStepHoldsNoUnitWhileItWaits":         true,
	"TestGatedStepWaitsForTheInstancesOwnCommands": true,
	"TestTwoProcessesOnTheRuntime":                 true,
	"TestLoopsFireTimersAndResumeParkedSteps":      true,
	"TestCommandsSurviveACrashAfterTheStep":        true,
	"TestOperatorRequestsAreCarriedOutByTheEngine": true,
	"TestRetryOfAStuckInstance":                    true,
	"TestLargeMessagesParkQueueAndRunWhole":        true,
	"TestUnitOfManyEventsAppliesEachOnceInOrder":   true,
	"TestOnCancelUndoesWhatTheInstanceDid":         true,
	"TestFreeTextIsStoredWhateverItHolds":          true,
	"TestRandomisedDeliveries":                     true,
}

func forEachStore(t *testing.T, fn func(t *testing.T, mk storeMaker)) {
	t.Helper()
	for name, mk := range storeMakers {
		if sometimesStores[name] && !*allStores && !alwaysOnEvery[strings.SplitN(t.Name(), "/", 2)[0]] {
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, mk)
		})
	}
}

// forEachSeed runs fn on every store over seeds 0 to n-1: n is memory on
// the in-memory store and postgres on the slower others.
func forEachSeed(t *testing.T, memory, postgres int, fn func(t *testing.T, mk storeMaker, seed uint64)) {
	t.Helper()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		n := memory
		if mk != nil {
			n = postgres
		}
		for seed := range uint64(n) {
			t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { fn(t, mk, seed) })
		}
	})
}

// randomSeed draws a seed for a test's random inputs and logs it, so a
// failure can be replayed by putting it in place of the draw.
func randomSeed(t *testing.T) uint64 {
	t.Helper()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	return seed
}

type setup struct {
	gated  bool
	config func(*sagatest.Config)
}

func newFixture(t *testing.T, mk storeMaker, s setup) *sagatest.Fixture {
	t.Helper()
	reg := registry()
	def := orderSaga(s.gated)
	cfg := &sagatest.Config{Registry: reg, Sagas: []saga.Definition{def}, Models: map[string]sagatest.Model{summaryModel: applySummary}}
	if mk != nil {
		cfg.Store = mk(t, reg)
	}
	if s.config != nil {
		s.config(cfg)
	}
	return sagatest.New(t, cfg)
}

func placed(id string, total int) sagatest.Event {
	return sagatest.Event{Stream: "order-" + id, Data: OrderPlaced{OrderID: id, Total: total}}
}

func ev(id string, data any) sagatest.Event { return sagatest.Event{Stream: "order-" + id, Data: data} }

func kinds(tl saga.Timeline) []string {
	var out []string
	for _, h := range tl.History {
		out = append(out, h.Kind)
	}
	return out
}

func TestHappyPath(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		fx := newFixture(t, mk, setup{})
		res := fx.Append(placed("1", 30))
		require.NoError(t, fx.Settle())
		fx.ExpectCommands(ReserveStock{OrderID: "1"})
		cmd := fx.Commands()[0]
		require.Equal(t, "1", cmd.Correlation, "commands carry the instance id as correlation id")
		require.Equal(t, res.EventIDs[0], cmd.Causation, "commands carry the triggering event as causation id")
		require.Equal(t, res.Token, cmd.CausalToken, "commands carry the causal token")
		require.Equal(t, "cmd.stock.reserve-1", cmd.Stream)
		fx.ExpectTimer(orders, "1", "payment", 30*time.Minute).ExpectStatus(orders, "1", saga.StatusRunning)

		fx.When(ev("1", StockReserved{OrderID: "1"})).ExpectCommands(ChargePayment{OrderID: "1", Amount: 30})
		fx.When(ev("1", PaymentCharged{OrderID: "1"})).ExpectCommands(ShipOrder{OrderID: "1"})
		fx.ExpectStatus(orders, "1", saga.StatusCompleted).ExpectNoTimer(orders, "1", "payment")
		require.Equal(t, orderState{OrderID: "1", Total: 30}, sagatest.State[orderState](fx, orders, "1"))

		info := fx.Instance(orders, "1")
		require.Equal(t, int64(3), info.Steps)
		require.False(t, info.Token.Before(fx.Commands()[0].Token), "the causal token covers the commands the instance produced")
		tl := fx.History(orders, "1")
		require.Equal(t, []string{
			"started", "step", "compensation_registered", "command_sent", "timer_scheduled",
			"step", "compensation_registered", "command_sent",
			"step", "command_sent", "timer_cancelled", "completed",
		}, kinds(tl))
	})
}

func TestDeclineCompensatesInReverseOrder(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		fx := newFixture(t, mk, setup{})
		fx.Given(placed("1", 30), ev("1", StockReserved{OrderID: "1"}))
		fx.When(ev("1", PaymentDeclined{OrderID: "1", Reason: "card expired"}))
		fx.ExpectCommands(ReleaseStock{OrderID: "1"}, NotifyCustomer{OrderID: "1", Text: "order cancelled"})
		fx.ExpectStatus(orders, "1", saga.StatusFailed).ExpectNoTimer(orders, "1", "payment")
		require.Equal(t, "payment declined: card expired", fx.Instance(orders, "1").Reason)
		require.Contains(t, kinds(fx.History(orders, "1")), "compensating")
	})
}

func TestPaymentTimeout(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		fx := newFixture(t, mk, setup{})
		fx.Given(placed("1", 30), ev("1", StockReserved{OrderID: "1"}))
		fx.Advance(29 * time.Minute).ExpectCommands()
		fx.ExpectStatus(orders, "1", saga.StatusRunning)
		fx.Advance(time.Minute).ExpectCommands(ReleaseStock{OrderID: "1"}, NotifyCustomer{OrderID: "1", Text: "order cancelled"})
		fx.ExpectStatus(orders, "1", saga.StatusFailed)
		require.Equal(t, "payment timed out", fx.Instance(orders, "1").Reason)
		// It fired once: nothing more happens later.
		fx.Advance(time.Hour).ExpectCommands()
		require.Equal(t, 1.0, testutil.ToFloat64(fx.Engine().Metrics().TimersFired.WithLabelValues(orders)), "timers fired")
	})
}

func TestLateEventAfterCompletionIsIgnoredVisibly(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		fx := newFixture(t, mk, setup{})
		fx.Given(placed("1", 30), ev("1", StockReserved{OrderID: "1"}), ev("1", PaymentCharged{OrderID: "1"}))
		fx.ExpectStatus(orders, "1", saga.StatusCompleted)
		fx.When(ev("1", PaymentDeclined{OrderID: "1", Reason: "late"})).ExpectCommands()
		fx.ExpectStatus(orders, "1", saga.StatusCompleted)
		tl := fx.History(orders, "1")
		last := tl.History[len(tl.History)-1]
		require.Equal(t, saga.KindIgnored, last.Kind)
		require.Equal(t, "payment.declined", last.EventType)
		require.Contains(t, last.Detail, "completed")

		// An event for an instance that never existed is recorded too.
		fx.When(ev("9", PaymentCharged{OrderID: "9"})).ExpectCommands()
		tl = fx.History(orders, "9")
		require.Len(t, tl.Ignored, 1)
		require.Equal(t, "payment.charged", tl.Ignored[0].EventType)
	})
}

func TestStateIsKeptAcrossSteps(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		fx := newFixture(t, mk, setup{})
		fx.Given(placed("1", 30))
		for i := range 5 {
			fx.When(ev("1", Ping{OrderID: "1", N: i}))
		}
		require.Equal(t, []int{0, 1, 2, 3, 4}, sagatest.State[orderState](fx, orders, "1").Pings)
	})
}

func TestGatedStepParksAndRunsOnCaughtUpData(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		fx := newFixture(t, mk, setup{gated: true})
		fx.Given(placed("2", 20), ev("2", StockReserved{OrderID: "2"}))
		fx.ExpectCommands()

		fx.HoldModel(summaryModel)
		fx.When(placed("1", 30), ev("1", StockReserved{OrderID: "1"}))
		fx.ExpectCommands(ReserveStock{OrderID: "1"})
		fx.ExpectParked(orders, "1", summaryModel)
		// Later messages of the parked instance queue behind the step...
		fx.When(ev("1", Ping{OrderID: "1", N: 7}))
		require.Equal(t, int64(1), fx.Instance(orders, "1").Queued)
		require.Empty(t, sagatest.State[orderState](fx, orders, "1").Pings)
		// ...while other instances keep going.
		for _, h := range fx.History(orders, "2").History {
			if h.Kind == saga.KindStep && h.EventType == "stock.reserved" {
				require.Equal(t, []string{summaryModel}, h.Models, "the step's history says what it waited for")
				require.NotEmpty(t, h.Waited)
			}
		}
		fx.When(ev("2", PaymentCharged{OrderID: "2"})).ExpectCommands(ShipOrder{OrderID: "2"})
		fx.ExpectStatus(orders, "2", saga.StatusCompleted)

		fx.ReleaseModel(summaryModel)
		fx.ExpectCommands(ChargePayment{OrderID: "1", Amount: 30})
		in := fx.Instance(orders, "1")
		require.Equal(t, saga.StatusRunning, in.Status)
		require.Zero(t, in.Queued)
		require.Equal(t, []int{7}, sagatest.State[orderState](fx, orders, "1").Pings, "the queued message ran after the parked step")
		ks := kinds(fx.History(orders, "1"))
		require.Subset(t, ks, []string{"parked", "queued", "resumed"})
		require.Less(t, indexOf(ks, "parked"), indexOf(ks, "resumed"))
		require.Equal(t, 1.0, testutil.ToFloat64(fx.Engine().Metrics().Parks.WithLabelValues(orders)), "parks")
	})
}

func indexOf(ks []string, k string) int {
	for i, x := range ks {
		if x == k {
			return i
		}
	}
	return -1
}

func TestStuckStepIsReportedNeverRunStale(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		fx := newFixture(t, mk, setup{gated: true})
		fx.HoldModel(summaryModel)
		fx.Given(placed("1", 30), ev("1", StockReserved{OrderID: "1"}))
		fx.Advance(saga.DefaultStuckAfter + time.Second).ExpectCommands()
		in := fx.Instance(orders, "1")
		require.True(t, in.Stuck)
		stuck, err := fx.Engine().List(context.Background(), saga.Filter{StuckLongerThan: saga.DefaultStuckAfter})
		require.NoError(t, err)
		require.Len(t, stuck, 1)
		require.Contains(t, kinds(fx.History(orders, "1")), "stuck")
		for _, h := range fx.History(orders, "1").History {
			if h.Kind == saga.KindStuck {
				require.Equal(t, in.ParkedType, h.EventType, "the stuck entry names its step's event")
				require.Equal(t, in.ParkedEvent, h.EventID)
				require.Equal(t, in.WaitToken, h.Token)
			}
		}
		fx.ReleaseModel(summaryModel)
		fx.ExpectCommands(ChargePayment{OrderID: "1", Amount: 30})
		require.False(t, fx.Instance(orders, "1").Stuck)
	})
}

func TestTimerRacingItsCancellationNeverActs(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		fx := newFixture(t, mk, setup{})
		fx.Given(placed("1", 30), ev("1", StockReserved{OrderID: "1"}))
		// The payment arrives first; the timer comes due and fires before the
		// payment's step has run (and cancelled it).
		fx.Append(ev("1", PaymentCharged{OrderID: "1"}))
		fx.Clock().Advance(31 * time.Minute)
		n, err := fx.Engine().FireDue(context.Background())
		require.NoError(t, err)
		require.Equal(t, 1, n)
		fx.When().ExpectCommands(ShipOrder{OrderID: "1"})
		fx.ExpectStatus(orders, "1", saga.StatusCompleted)
		tl := fx.History(orders, "1")
		last := tl.History[len(tl.History)-1]
		require.Equal(t, saga.KindIgnored, last.Kind, "the fired timer reached a completed instance")
		require.Equal(t, saga.TimerFiredType, last.EventType)
	})
}

func TestTimerFiredBeforeItsRescheduleIsStale(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		fx := newFixture(t, mk, setup{})
		fx.Given(placed("1", 30), ev("1", StockReserved{OrderID: "1"}))
		// A message that postpones the timer is in the feed when the old
		// generation fires.
		fx.Append(ev("1", Ping{OrderID: "1", N: -1}))
		fx.Clock().Advance(31 * time.Minute)
		n, err := fx.Engine().FireDue(context.Background())
		require.NoError(t, err)
		require.Equal(t, 1, n)
		fx.When().ExpectCommands()
		fx.ExpectStatus(orders, "1", saga.StatusRunning).ExpectTimer(orders, "1", "payment", time.Hour)
		require.Contains(t, kinds(fx.History(orders, "1")), saga.KindTimerStale)
		require.Equal(t, 1.0, testutil.ToFloat64(fx.Engine().Metrics().TimersStale.WithLabelValues(orders)))
		// The new generation still fires, once.
		fx.Advance(time.Hour).ExpectCommands(ReleaseStock{OrderID: "1"}, NotifyCustomer{OrderID: "1", Text: "order cancelled"})
		fx.Advance(2 * time.Hour).ExpectCommands()
	})
}

func TestBadCorrelationIsAClearError(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		reg := registry()
		s := saga.New[orderState]("bad", nil)
		saga.StartOn(s, func(e OrderPlaced, _ events.Envelope) string {
			if e.OrderID == "boom" {
				panic("no order id")
			}
			return ""
		}, func(*saga.Step[orderState], OrderPlaced) error { return nil })
		cfg := &sagatest.Config{Registry: reg, Sagas: []saga.Definition{s}}
		if mk != nil {
			cfg.Store = mk(t, reg)
		}
		fx := sagatest.New(t, cfg)
		err := fx.TryWhen(placed("1", 1))
		require.ErrorIs(t, err, saga.ErrCorrelation)
		require.Contains(t, err.Error(), `returned ""`)
		err = fx.TryWhen(placed("boom", 1))
		require.ErrorIs(t, err, saga.ErrCorrelation)
		require.Contains(t, err.Error(), "panicked")
		list, err := fx.Engine().List(context.Background(), saga.Filter{})
		require.NoError(t, err)
		require.Empty(t, list, "nothing was routed")
	})
}

func TestFailingHandlerBacksOffThenFails(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		reg := registry()
		calls := 0
		s := saga.New[orderState]("flaky", &saga.Config[orderState]{MaxAttempts: 3, RetryBackoff: time.Second})
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
			calls++
			if err := st.Send(ReserveStock{OrderID: e.OrderID}); err != nil {
				return err
			}
			if calls < 10 {
				panic("handler bug")
			}
			return nil
		})
		cfg := &sagatest.Config{Registry: reg, Sagas: []saga.Definition{s}}
		if mk != nil {
			cfg.Store = mk(t, reg)
		}
		fx := sagatest.New(t, cfg)
		fx.When(placed("1", 1)).ExpectCommands()
		require.Equal(t, 1, calls, "no hot loop: the retry waits for its backoff")
		fx.ExpectStatus("flaky", "1", saga.StatusParked)
		fx.Advance(time.Second).ExpectCommands()
		require.Equal(t, 2, calls)
		fx.Advance(2 * time.Second).ExpectCommands()
		require.Equal(t, 3, calls)
		in := fx.Instance("flaky", "1")
		require.Equal(t, saga.StatusFailed, in.Status)
		require.Contains(t, in.Reason, "handler bug")
		fx.Advance(time.Hour).ExpectCommands()
		require.Equal(t, 3, calls, "a failed instance is not retried by itself")

		// Later messages queue; an operator's retry runs the step again.
		fx.When(ev("1", Ping{OrderID: "1"}))
		calls = 10
		require.NoError(t, fx.Engine().Retry(context.Background(), "flaky", "1"))
		require.NoError(t, fx.Settle())
		fx.ExpectCommands(ReserveStock{OrderID: "1"})
		fx.ExpectStatus("flaky", "1", saga.StatusRunning)
		require.Contains(t, kinds(fx.History("flaky", "1")), saga.KindRetried)
	})
}

func TestCommandWithoutHandlerFailsVisibly(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		handlers := catalog{"stock.reserve": true, "customer.notify": true, "stock.release": true}
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) {
			c.Commands = handlers
		}})
		fx.Given(placed("1", 30))
		fx.When(ev("1", StockReserved{OrderID: "1"})).ExpectCommands()
		in := fx.Instance(orders, "1")
		require.Equal(t, saga.StatusFailed, in.Status)
		require.Contains(t, in.Reason, `"payment.charge"`)
		require.Contains(t, in.Reason, "no command handler")
		require.Equal(t, int64(1), in.Steps, "the refused step left the instance as it was")
		require.NotContains(t, kinds(fx.History(orders, "1"))[5:], saga.KindCompensation)

		// Once a handler is deployed, an operator retries the step.
		handlers["payment.charge"] = true
		require.NoError(t, fx.Engine().Retry(context.Background(), orders, "1"))
		require.NoError(t, fx.Settle())
		fx.ExpectCommands(ChargePayment{OrderID: "1", Amount: 30})
		fx.ExpectStatus(orders, "1", saga.StatusRunning)
	})
}

type catalog map[string]bool

func (c catalog) Handles(t string) bool { return c[t] }

func TestCancelEndsAnInstance(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		fx := newFixture(t, mk, setup{})
		fx.Given(placed("1", 30))
		ctx := context.Background()
		require.NoError(t, fx.Engine().Cancel(ctx, orders, "1", "customer called"))
		fx.ExpectStatus(orders, "1", saga.StatusCancelled).ExpectNoTimer(orders, "1", "payment")
		require.ErrorIs(t, fx.Engine().Cancel(ctx, orders, "1", ""), saga.ErrEnded)
		require.ErrorIs(t, fx.Engine().Retry(ctx, orders, "1"), saga.ErrNotRetryable)
		require.ErrorIs(t, fx.Engine().Cancel(ctx, orders, "nope", ""), saga.ErrNotFound)
		fx.Advance(time.Hour).ExpectCommands()
		list, err := fx.Engine().List(ctx, saga.Filter{Status: saga.StatusCancelled})
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.True(t, strings.HasPrefix(list[0].Reason, "customer called"))
	})
}

func TestCompensationsRunOnceNewestFirst(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		s := saga.New[orderState]("comp", nil)
		note := func(text string) NotifyCustomer { return NotifyCustomer{OrderID: "1", Text: text} }
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], _ OrderPlaced) error {
			return st.Compensate(note("first"))
		})
		saga.On(s, byOrder[Ping], func(st *saga.Step[orderState], e Ping) error {
			if err := st.Compensate(note(fmt.Sprint("ping ", e.N))); err != nil {
				return err
			}
			st.RunCompensations()
			require.True(t, st.Compensating())
			return st.Compensate(note("after")) // registered, not run
		})
		reg := registry()
		cfg := &sagatest.Config{Registry: reg, Sagas: []saga.Definition{s}}
		if mk != nil {
			cfg.Store = mk(t, reg)
		}
		fx := sagatest.New(t, cfg)
		fx.Given(placed("1", 1))
		fx.When(ev("1", Ping{OrderID: "1", N: 1})).ExpectCommands(note("ping 1"), note("first"))
		fx.ExpectStatus("comp", "1", saga.StatusCompensating)
		fx.When(ev("1", Ping{OrderID: "1", N: 2})).ExpectCommands()
	})
}

func TestAdvanceFiresTimersAtTheirDueTimes(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		s := saga.New[orderState]("clock", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], _ OrderPlaced) error {
			st.Schedule("b", 2*time.Minute)
			st.Schedule("a", time.Minute)
			return nil
		})
		tick := func(st *saga.Step[orderState], to saga.Timeout) error {
			require.True(t, st.Now().Equal(to.Due), "the handler runs at the due time")
			return st.Send(NotifyCustomer{OrderID: st.ID(), Text: to.Name + " at " + st.Now().Format("15:04")})
		}
		saga.OnTimeout(s, "a", tick)
		saga.OnTimeout(s, "b", tick)
		reg := registry()
		cfg := &sagatest.Config{Registry: reg, Sagas: []saga.Definition{s}}
		if mk != nil {
			cfg.Store = mk(t, reg)
		}
		fx := sagatest.New(t, cfg)
		fx.Given(placed("1", 1)).ExpectTimer("clock", "1", "a", time.Minute).ExpectTimer("clock", "1", "b", 2*time.Minute)
		fx.Advance(time.Hour).ExpectCommands(
			NotifyCustomer{OrderID: "1", Text: "a at 09:01"},
			NotifyCustomer{OrderID: "1", Text: "b at 09:02"},
		)
		require.Equal(t, sagatest.DefaultStart.Add(time.Hour), fx.Clock().Now())
	})
}

func TestStoredAliasReachesTheHandler(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		var reg *events.Registry
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) {
			reg = c.Registry
			require.NoError(t, reg.Alias("order.created", "order.placed"))
		}})
		fx.When(sagatest.Event{Stream: "order-1", Data: events.Raw{Type: "order.created", Payload: []byte(`{"order_id":"1","total":3}`)}})
		fx.ExpectCommands(ReserveStock{OrderID: "1"})
		require.Equal(t, 3, sagatest.State[orderState](fx, orders, "1").Total)
	})
}

func TestRetryAfterAndPermanent(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		attempts := 0
		s := saga.New[orderState]("errs", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
			attempts++
			if err := st.Send(ReserveStock{OrderID: e.OrderID}); err != nil {
				return err
			}
			switch {
			case e.Total == 1 && attempts == 1:
				return saga.RetryAfter(10 * time.Second) // the command above is discarded
			case e.Total == 2:
				return saga.Permanent(errors.New("order total 2 is not allowed"))
			}
			return nil
		})
		fx := newErrsFixture(t, mk, s)
		fx.When(placed("1", 1)).ExpectCommands()
		in := fx.Instance("errs", "1")
		require.Equal(t, saga.StatusParked, in.Status)
		require.Equal(t, fx.Clock().Now().Add(10*time.Second), in.RetryAt)
		fx.Advance(9 * time.Second).ExpectCommands()
		fx.Advance(time.Second).ExpectCommands(ReserveStock{OrderID: "1"})
		fx.ExpectStatus("errs", "1", saga.StatusRunning)
		require.Equal(t, 2, attempts)

		fx.When(placed("2", 2)).ExpectCommands()
		in = fx.Instance("errs", "2")
		require.Equal(t, saga.StatusFailed, in.Status)
		require.Contains(t, in.Reason, "order total 2 is not allowed")
		fx.Advance(time.Hour).ExpectCommands()
		require.Equal(t, 3, attempts, "a permanent failure is not retried")
	})
}

// errOf is the error of an Operator request, for tests that check only
// whether it was recorded.
func errOf(_ saga.Request, err error) error { return err }

package saga_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
	"github.com/converge-es/converge/saga/sagatest"
)

// BulkyNotice is a command of many small fields, TinyNumbers one of
// numbers that jsonb writes out at length.
type BulkyNotice struct {
	OrderID string `json:"order_id"`
	N       []int  `json:"n"`
}
type TinyNumbers struct {
	OrderID string    `json:"order_id"`
	X       []float64 `json:"x"`
}

// numbersState is a state of numbers that jsonb writes out at length.
type numbersState struct {
	X []float64 `json:"x"`
}

const storedSaga = "stored"

// storedFixture runs def on the store mk makes, with BulkyNotice and
// TinyNumbers registered.
func storedFixture(t *testing.T, mk storeMaker, def saga.Definition) *sagatest.Fixture {
	t.Helper()
	reg := registry()
	events.Register[BulkyNotice](reg, "customer.bulky")
	events.Register[TinyNumbers](reg, "customer.tiny")
	cfg := &sagatest.Config{Registry: reg, Sagas: []saga.Definition{def}}
	if mk != nil {
		cfg.Store = mk(t, reg)
	}
	return sagatest.New(t, cfg)
}

// ones is n ones: as JSON, [1,1,...] of 2n+1 bytes.
func ones(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = 1
	}
	return s
}

// tiny is n numbers of 1e-300: 7 bytes each as Go writes them, 304 as
// jsonb does.
func tiny(n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = 1e-300
	}
	return s
}

// TestStateAndCompensationsKeepTheirBytesOnEveryStore: an order registers
// NotifyCustomer as a compensation and is declined, which sends it. On
// memory and on PostgreSQL alike, the compensation is sent as Compensate
// encoded it (the command_sent history entry shows the bytes appended),
// and Info.State holds the bytes the step encoded. Kept as JSON in the
// instance row, both came back from PostgreSQL in jsonb's form (keys
// reordered, spaces added). The command read back from the event store
// means the same on both (its bytes are the event store's business).
func TestStateAndCompensationsKeepTheirBytesOnEveryStore(t *testing.T) {
	t.Parallel()
	run := func(mk storeMaker) (payload json.RawMessage, state, detail string) {
		fx := newFixture(t, mk, setup{})
		fx.Given(placed("1", 30), ev("1", StockReserved{OrderID: "1"}), ev("1", Ping{OrderID: "1", N: 7}))
		fx.When(ev("1", PaymentDeclined{OrderID: "1", Reason: "card expired"}))
		for pos := (events.Token{}); ; {
			b, err := drive.Read(context.Background(), fx.Store(), pos, feed.Filter{}, 500)
			require.NoError(t, err)
			if len(b.Events) == 0 {
				break
			}
			for _, env := range b.Events {
				pos = env.Token
				if env.Type == "customer.notify" {
					payload = env.Payload
				}
			}
		}
		for _, h := range fx.History(orders, "1").History {
			if h.Kind == saga.KindCommandSent && h.EventType == "customer.notify" {
				detail = h.Detail
			}
		}
		return payload, string(fx.Instance(orders, "1").State), detail
	}
	wantPayload, err := json.Marshal(NotifyCustomer{OrderID: "1", Text: "order cancelled"})
	require.NoError(t, err)
	wantState, err := json.Marshal(orderState{OrderID: "1", Total: 30, Pings: []int{7}})
	require.NoError(t, err)
	for name, mk := range map[string]storeMaker{"memory": nil, "postgres": storeMakers["postgres"]} {
		payload, state, detail := run(mk)
		require.Equal(t, string(wantPayload), detail, "%s: the compensation's payload as sent", name)
		require.Equal(t, string(wantState), state, "%s: Info.State", name)
		require.JSONEq(t, string(wantPayload), string(payload), "%s: the command read back", name)
	}
}

// TestACompensationAcceptedWhenRegisteredIsSentOnEveryStore: the start
// step registers a compensation of about 680 KB, which Compensate's
// checks accept (as a command within the store's 1 MiB payload limit,
// counted as PostgreSQL gives it back, 1.02 MB with a space after every
// ',', and within what an instance holds); a later step runs it. Kept as
// JSON in the instance's row, it came back from PostgreSQL as those 1.02
// MB, and the step that runs it was refused: the instance failed with
// "the store refuses" and the compensation was never sent.
func TestACompensationAcceptedWhenRegisteredIsSentOnEveryStore(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		s := saga.New[orderState](storedSaga, nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
			return st.Compensate(BulkyNotice{OrderID: e.OrderID, N: ones(340_000)})
		})
		saga.On(s, byOrder[PaymentDeclined], func(st *saga.Step[orderState], _ PaymentDeclined) error {
			st.RunCompensations()
			st.Fail("declined")
			return nil
		})
		fx := storedFixture(t, mk, s)
		fx.Given(placed("1", 30))
		fx.ExpectStatus(storedSaga, "1", saga.StatusRunning)
		fx.When(ev("1", PaymentDeclined{OrderID: "1"}))
		require.Equal(t, "declined", fx.Instance(storedSaga, "1").Reason, "the declining step ran")
		cmds := fx.Commands()
		require.Len(t, cmds, 1, "the compensation is sent")
		sent, ok := cmds[0].Value.(BulkyNotice)
		require.True(t, ok, "%T", cmds[0].Value)
		require.True(t, slices.Equal(ones(340_000), sent.N), "the compensation is sent whole")
	})
}

// TestAnInstanceWhoseCompensationsFitTakesItsNextStepOnEveryStore: the
// start step registers seven compensations of about 100 KB each, 700 KB
// together, within the 960 KiB an instance holds. Kept as JSON, they came
// back from PostgreSQL half as large again, and every later step of the
// instance, even one that does nothing, was refused ("more than the ...
// an instance holds"): the instance failed.
func TestAnInstanceWhoseCompensationsFitTakesItsNextStepOnEveryStore(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		s := saga.New[orderState](storedSaga, nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
			for range 7 {
				if err := st.Compensate(BulkyNotice{OrderID: e.OrderID, N: ones(50_000)}); err != nil {
					return err
				}
			}
			return nil
		})
		saga.On(s, byOrder[Ping], func(st *saga.Step[orderState], e Ping) error {
			st.State().Pings = append(st.State().Pings, e.N)
			return nil
		})
		fx := storedFixture(t, mk, s)
		fx.Given(placed("1", 30))
		fx.ExpectStatus(storedSaga, "1", saga.StatusRunning)
		fx.When(ev("1", Ping{OrderID: "1", N: 1}))
		in := fx.Instance(storedSaga, "1")
		require.Equal(t, saga.StatusRunning, in.Status, "reason: %s", in.Reason)
		require.JSONEq(t, `{"order_id":"","total":0,"pings":[1]}`, string(in.State))
	})
}

// TestACompensationOfSmallNumbersIsSentOnEveryStore: two compensations
// of 3,000 numbers of 1e-300 (21 KB each) are accepted when registered:
// as commands, each is 0.9 MB as PostgreSQL gives it back (jsonb writes
// each number out in 304 characters), within the 1 MiB limit. Kept as
// JSON in the instance's row, they came back from PostgreSQL as 1.8 MB:
// every later step failed its unit (the instance row, written again, was
// over 1 MiB), which the runtime would retry and then halt the partition
// for.
func TestACompensationOfSmallNumbersIsSentOnEveryStore(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		s := saga.New[orderState](storedSaga, nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
			for range 2 {
				if err := st.Compensate(TinyNumbers{OrderID: e.OrderID, X: tiny(3000)}); err != nil {
					return err
				}
			}
			return nil
		})
		saga.On(s, byOrder[Ping], func(*saga.Step[orderState], Ping) error { return nil })
		saga.On(s, byOrder[PaymentDeclined], func(st *saga.Step[orderState], _ PaymentDeclined) error {
			st.RunCompensations()
			st.Fail("declined")
			return nil
		})
		fx := storedFixture(t, mk, s)
		fx.Given(placed("1", 30))
		require.NoError(t, fx.TryWhen(ev("1", Ping{OrderID: "1"})), "a step that does nothing")
		fx.When(ev("1", PaymentDeclined{OrderID: "1"}))
		require.Equal(t, "declined", fx.Instance(storedSaga, "1").Reason, "the declining step ran")
		cmds := fx.Commands()
		require.Len(t, cmds, 2, "the compensations are sent")
		for _, cmd := range cmds {
			sent, ok := cmd.Value.(TinyNumbers)
			require.True(t, ok, "%T", cmd.Value)
			require.True(t, slices.Equal(tiny(3000), sent.X), "the compensation is sent whole")
		}
	})
}

// TestAStateOfSmallNumbersIsWrittenAgainOnEveryStore: a state of 4,000
// numbers of 1e-300 (28 KB) is stored by a step that completes the
// instance; a later message for it is ignored, which writes the instance
// row again with the state as it was read. Kept as JSON, the state came
// back from PostgreSQL as 1.2 MB and the row was refused: the message's
// unit failed at every delivery.
func TestAStateOfSmallNumbersIsWrittenAgainOnEveryStore(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		s := saga.New[numbersState](storedSaga, nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[numbersState], _ OrderPlaced) error {
			st.State().X = tiny(4000)
			st.Complete()
			return nil
		})
		saga.On(s, byOrder[Ping], func(*saga.Step[numbersState], Ping) error { return nil })
		fx := storedFixture(t, mk, s)
		fx.Given(placed("1", 30))
		require.NoError(t, fx.TryWhen(ev("1", Ping{OrderID: "1"})), "a message for the ended instance")
		tl := fx.History(storedSaga, "1")
		require.Equal(t, saga.KindIgnored, tl.History[len(tl.History)-1].Kind)
		want, err := json.Marshal(numbersState{X: tiny(4000)})
		require.NoError(t, err)
		require.Equal(t, string(want), string(tl.Info.State), "Info.State")
	})
}

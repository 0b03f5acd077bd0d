package saga_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// What a step can hand the engine that the store would refuse; each kind
// is chosen by an OrderPlaced's Total.
var refusedKinds = []struct {
	name string
	// reason is in the failed instance's reason.
	reason string
	run    func(st *saga.Step[orderState], id string) error
}{
	{"state with a NUL", "state cannot be stored", func(st *saga.Step[orderState], _ string) error {
		st.State().OrderID = "a\x00b"
		return nil
	}},
	{"state too large", "an instance holds", func(st *saga.Step[orderState], _ string) error {
		// Over what an instance holds, under the row limit: "0," per ping.
		st.State().Pings = make([]int, (events.DefaultMaxPayloadBytes-32<<10)/2)
		return nil
	}},
	{"command too large", "which the store refuses", func(st *saga.Step[orderState], id string) error {
		return st.Send(NotifyCustomer{OrderID: id, Text: strings.Repeat("x", events.DefaultMaxPayloadBytes)})
	}},
	{"command with a NUL", "which the store refuses", func(st *saga.Step[orderState], id string) error {
		return st.Send(NotifyCustomer{OrderID: id, Text: "a\x00b"})
	}},
	{"compensation with a NUL", "cannot be stored", func(st *saga.Step[orderState], id string) error {
		return st.Compensate(NotifyCustomer{OrderID: id, Text: "a\x00b"})
	}},
}

// TestStepsTheStoreWouldRefuseFailTheInstance: a step whose state,
// command or compensation the store would refuse fails its instance at
// once, naming what was refused, with nothing of the step kept (its other
// commands included); it never fails the unit, which the runtime would
// retry and then halt, holding up every other instance of the partition.
// Steps of good instances in between go on as usual. Each kind comes up
// in a random order among good steps.
func TestStepsTheStoreWouldRefuseFailTheInstance(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 131))
		s := saga.New[orderState]("refused", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
			// A good command first: it must not leave with the refused step.
			if err := st.Send(ReserveStock{OrderID: e.OrderID}); err != nil {
				return err
			}
			if e.Total < 0 {
				return refusedKinds[-e.Total-1].run(st, e.OrderID)
			}
			return nil
		})
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Sagas = []saga.Definition{s} }})
		order := rng.Perm(2 * len(refusedKinds))
		for i, k := range order {
			id := fmt.Sprint("o", i)
			if k >= len(refusedKinds) {
				fx.When(sagatest.Event{Stream: "order-" + id, Data: OrderPlaced{OrderID: id, Total: 1}})
				fx.ExpectCommands(ReserveStock{OrderID: id})
				fx.ExpectStatus("refused", id, saga.StatusRunning)
				continue
			}
			kind := refusedKinds[k]
			fx.When(sagatest.Event{Stream: "order-" + id, Data: OrderPlaced{OrderID: id, Total: -k - 1}})
			fx.ExpectCommands()
			fx.ExpectStatus("refused", id, saga.StatusFailed)
			require.Contains(t, fx.Instance("refused", id).Reason, kind.reason, kind.name)
		}
	})
}

// TestHistoryClipsLongDetails: a command's payload shows in the timeline
// up to 4 KiB, cut on a rune boundary and saying its full size; shorter
// ones in full.
func TestHistoryClipsLongDetails(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 137))
		texts := map[string]string{}
		s := saga.New[orderState]("clipped", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
			return st.Send(NotifyCustomer{OrderID: e.OrderID, Text: texts[e.OrderID]})
		})
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Sagas = []saga.Definition{s} }})
		for i := range 8 {
			id := fmt.Sprint("o", i)
			texts[id] = randomID(rng, rng.IntN(16<<10))
			fx.When(sagatest.Event{Stream: "order-" + id, Data: OrderPlaced{OrderID: id, Total: 1}})
			var detail string
			for _, h := range fx.History("clipped", id).History {
				if h.Kind == saga.KindCommandSent {
					detail = h.Detail
				}
			}
			b, err := json.Marshal(NotifyCustomer{OrderID: id, Text: texts[id]})
			require.NoError(t, err)
			full := string(b)
			if len(full) <= 4<<10 {
				require.JSONEq(t, full, detail)
				continue
			}
			require.True(t, strings.HasSuffix(detail, fmt.Sprintf("… (%d bytes in all)", len(full))), "detail ends %q", detail[max(0, len(detail)-40):])
			kept := strings.TrimSuffix(detail, fmt.Sprintf("… (%d bytes in all)", len(full)))
			require.LessOrEqual(t, len(kept), 4<<10)
			require.Greater(t, len(kept), 4<<10-4, "cut at most a rune short")
			require.True(t, strings.HasPrefix(full, kept))
		}
	})
}

// TestHistoryOfAHugeStepKeepsItsEntries: a step whose timeline would not
// fit one row keeps every entry, in order, each with its (clipped)
// detail, over as many rows as it takes, and the step commits.
func TestHistoryOfAHugeStepKeepsItsEntries(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		const n = 300 // entries of a clipped 4 KiB detail: over the row limit together
		s := saga.New[orderState]("huge", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
			for i := range n {
				if err := st.Send(NotifyCustomer{OrderID: e.OrderID, Text: fmt.Sprint(i, strings.Repeat("x", 5<<10))}); err != nil {
					return err
				}
			}
			return nil
		})
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Sagas = []saga.Definition{s} }})
		fx.When(sagatest.Event{Stream: "order-1", Data: OrderPlaced{OrderID: "1", Total: 1}})
		require.Len(t, fx.Commands(), n)
		fx.ExpectStatus("huge", "1", saga.StatusRunning)
		sent := 0
		for i, h := range fx.History("huge", "1").History {
			require.Equal(t, int64(i+1), h.Seq, "entries in order, none missing")
			if h.Kind == saga.KindCommandSent {
				want := fmt.Sprintf(`{"order_id":"1","text":"%d`, sent)
				require.True(t, strings.HasPrefix(h.Detail, want), "command %d's detail kept", sent)
				require.True(t, strings.HasSuffix(h.Detail, " bytes in all)"), "and clipped")
				sent++
			}
		}
		require.Equal(t, n, sent)
	})
}

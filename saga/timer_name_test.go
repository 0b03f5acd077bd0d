package saga_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// randomControl returns one character the text rule refuses: a C0 or C1
// control, DEL, or a line or paragraph separator.
func randomControl(rng *rand.Rand) string {
	switch rng.IntN(4) {
	case 0:
		return string(rune(rng.IntN(0x20)))
	case 1:
		return string(rune(0x80 + rng.IntN(0x20)))
	case 2:
		return "\u007f"
	default:
		return []string{"\u2028", "\u2029"}[rng.IntN(2)]
	}
}

// randomTimerName returns a timer name and whether the documented rule
// allows it: 1 to MaxTimerNameLength bytes of valid UTF-8 without control
// characters.
func randomTimerName(rng *rand.Rand) (string, bool) {
	switch rng.IntN(5) {
	case 0:
		return "", false
	case 1:
		return randomID(rng, saga.MaxTimerNameLength+1+rng.IntN(400)), false
	case 2:
		// Within the length limit, with one refused character anywhere.
		rs := []rune(randomID(rng, rng.IntN(saga.MaxTimerNameLength-3)))
		k := rng.IntN(len(rs) + 1)
		return string(rs[:k]) + randomControl(rng) + string(rs[k:]), false
	case 3:
		return randomID(rng, saga.MaxTimerNameLength-1) + "\xff", false // not UTF-8
	default:
		return randomID(rng, 1+rng.IntN(saga.MaxTimerNameLength)), true
	}
}

// TestTimerNamesFollowTheirRule: a step that schedules a timer under a
// name the rule allows (random names, the longest with the longest
// instance id) commits it; one under any other name fails the instance
// permanently at once, naming the rule, with nothing of the step committed
// (not its command, not its timer). OnTimeout refuses the same names.
func TestTimerNamesFollowTheirRule(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 97))
		names := map[string]string{} // instance id -> timer name
		s := saga.New[orderState]("timer_names", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
			st.Schedule(names[e.OrderID], time.Hour)
			st.Cancel(names[e.OrderID] + "\x00") // never fails a step
			return st.Send(ReserveStock{OrderID: e.OrderID})
		})
		var cfg *sagatest.Config
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) {
			c.Sagas = []saga.Definition{s}
			cfg = c
		}})
		require.NotNil(t, cfg)
		n := 40
		if mk != nil {
			n = 10
		}
		for i := range n {
			name, ok := randomTimerName(rng)
			id := fmt.Sprint("o", i, "-", randomID(rng, saga.MaxInstanceIDLength-8))[:saga.MaxInstanceIDLength-8]
			id = strings.ToValidUTF8(id, "x")
			names[id] = name
			fx.When(sagatest.Event{Stream: fmt.Sprint("order-", i), Data: OrderPlaced{OrderID: id, Total: 1}})
			if ok {
				fx.ExpectCommands(ReserveStock{OrderID: id})
				fx.ExpectStatus("timer_names", id, saga.StatusRunning)
				fx.ExpectTimer("timer_names", id, name, time.Hour)
			} else {
				fx.ExpectCommands()
				fx.ExpectStatus("timer_names", id, saga.StatusFailed)
				fx.ExpectNoTimer("timer_names", id, name)
				require.Contains(t, fx.Instance("timer_names", id).Reason, "Schedule(", "name %q", name)
			}

			d := saga.New[orderState](fmt.Sprint("defs_", i), nil)
			err := saga.OnTimeoutSafely(d, name, func(*saga.Step[orderState], saga.Timeout) error { return nil })
			if ok {
				require.NoError(t, err, "name %q", name)
			} else {
				require.Error(t, err, "name %q", name)
			}
		}
	})
}

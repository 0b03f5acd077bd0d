package saga_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestLargeMessagesParkQueueAndRunWhole: an event as large as the store
// allows parks (its read model held back), and another queues behind it;
// neither makes a row the store refuses (rows hold what events may, and
// the instance row holds the state besides), and once the model catches
// up each step runs with its whole payload, in order. Payload sizes are
// random, up to the limit.
func TestLargeMessagesParkQueueAndRunWhole(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 149))
		s := saga.New[orderState]("large", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
		saga.On(s, byOrder[PaymentDeclined], func(st *saga.Step[orderState], e PaymentDeclined) error {
			return st.Send(NotifyCustomer{OrderID: e.OrderID, Text: fmt.Sprint(len(e.Reason), e.Reason[len(e.Reason)-1:])})
		}, saga.Reads(summaryModel))
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Sagas = []saga.Definition{s} }})
		fx.When(placed("1", 1))
		fx.HoldModel(summaryModel)

		// The payload is {"order_id":"1","reason":"..."}: 29 bytes around
		// the reason, 32 as PostgreSQL gives it back (a space after each
		// ':' and ','), which the limit counts.
		sizes := []int{events.DefaultMaxPayloadBytes - 32, 1 + rng.IntN(events.DefaultMaxPayloadBytes-32)}
		rng.Shuffle(len(sizes), func(i, j int) { sizes[i], sizes[j] = sizes[j], sizes[i] })
		var want []any
		for i, n := range sizes {
			reason := strings.Repeat("r", n-1) + fmt.Sprint(i)
			fx.When(ev("1", PaymentDeclined{OrderID: "1", Reason: reason}))
			fx.ExpectCommands()
			want = append(want, NotifyCustomer{OrderID: "1", Text: fmt.Sprint(n, fmt.Sprint(i))})
		}
		fx.ExpectParked("large", "1", summaryModel)
		fx.ReleaseModel(summaryModel)
		fx.ExpectCommands(want...)
		fx.ExpectStatus("large", "1", saga.StatusRunning)
	})
}

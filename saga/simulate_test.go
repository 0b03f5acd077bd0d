package saga_test

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// orderSim is the order saga's simulation config for n orders, the
// fourth of them rejected at the charge.
func orderSim(n int, invariants ...sagatest.Invariant) *sagatest.SimConfig {
	var start []sagatest.Event
	for i := range n {
		id := fmt.Sprint(i)
		total := 10 * (i + 1)
		if i == 3 {
			total = 500 // the charge is rejected
		}
		start = append(start, placed(id, total), ev(id, Ping{OrderID: id, N: 1}))
	}
	return &sagatest.SimConfig{
		Registry: registry(),
		Sagas: func(store saga.Store) []saga.Definition {
			return []saga.Definition{orderSaga(true)}
		},
		Commands:   func(store saga.Store) []cqrs.CommandHandler { return commandHandlers(store) },
		Models:     map[string]sagatest.Model{summaryModel: applySummary},
		Events:     start,
		Seeds:      40,
		Invariants: invariants,
	}
}

// TestSimulationRacesTimersAndHoldsModels: the simulation does what its
// doc says beyond crashes and duplicates: mid-run (not only while
// settling) it jumps the clock to fire timers while messages are in
// flight, and holds read models back. Each seed is stopped after some
// actions, and the trace of its last actions is searched.
func TestSimulationRacesTimersAndHoldsModels(t *testing.T) {
	t.Parallel()
	fired := regexp.MustCompile(`\n  clock to [^\n]*: [1-9][0-9]* timers fired`)
	var timers, holds int
	for seed := range uint64(40) {
		checks := 0
		cfg := orderSim(5, func(v *sagatest.SimView) error {
			if checks++; checks == 60 && !v.Final {
				return errors.New("stop")
			}
			return nil
		})
		err := sagatest.SimulateSeed(t.Context(), cfg, seed)
		if err == nil {
			continue // the seed settled within 60 actions
		}
		require.ErrorContains(t, err, "stop")
		timers += len(fired.FindAllString(err.Error(), -1))
		holds += strings.Count(err.Error(), " held=true")
	}
	require.Positive(t, timers, "timers fired mid-run, racing messages in flight")
	require.Positive(t, holds, "read models were held back")
}

// TestOrderSimulation runs the gated order saga, its command handlers and
// its read model under adversarial delivery over a fixed seed range:
// duplicates, cross-instance reordering, crashes between any two steps,
// timers racing events and a read model lagging at random. Whatever the
// schedule, no command is sent twice or out of order, no step reads a
// stale model, and every order ends consistently.
func TestOrderSimulation(t *testing.T) {
	t.Parallel()
	const n = 5
	sagatest.Simulate(t, orderSim(n,
		commandsOnceAndInOrder,
		func(v *sagatest.SimView) error {
			if !v.Final {
				return nil
			}
			list, err := v.Instances(orders)
			if err != nil {
				return err
			}
			if len(list) != n {
				return fmt.Errorf("%d instances, want %d", len(list), n)
			}
			for _, in := range list {
				if err := endedConsistently(v, in); err != nil {
					return err
				}
			}
			return nil
		},
	))
}

// commandsOnceAndInOrder: each order's commands are sent at most once
// each, and shipping only after charging.
func commandsOnceAndInOrder(v *sagatest.SimView) error {
	seen := map[string]int{}
	for i, c := range v.Commands {
		key := c.Type + "/" + c.Correlation
		if j, dup := seen[key]; dup {
			return fmt.Errorf("%s sent twice for order %s (commands %d and %d)", c.Type, c.Correlation, j, i)
		}
		seen[key] = i
		if c.Type == "order.ship" {
			if _, charged := seen["payment.charge/"+c.Correlation]; !charged {
				return fmt.Errorf("order %s shipped before it was charged", c.Correlation)
			}
		}
	}
	return nil
}

// endedConsistently: a completed order was reserved, charged and shipped;
// a failed one was never shipped, and its compensations ran once; no step
// ran on a stale read model.
func endedConsistently(v *sagatest.SimView, in saga.Info) error {
	count := func(typ string) int { return len(v.CommandsOf(typ, in.ID)) }
	if strings.Contains(in.Reason, "stale data") {
		return fmt.Errorf("order %s: %s", in.ID, in.Reason)
	}
	switch in.Status {
	case saga.StatusCompleted:
		for _, typ := range []string{"stock.reserve", "payment.charge", "order.ship"} {
			if count(typ) != 1 {
				return fmt.Errorf("completed order %s sent %s %d times", in.ID, typ, count(typ))
			}
		}
		if count("stock.release")+count("customer.notify") != 0 {
			return fmt.Errorf("completed order %s was compensated", in.ID)
		}
	case saga.StatusFailed:
		if count("order.ship") != 0 {
			return fmt.Errorf("failed order %s (%s) was shipped", in.ID, in.Reason)
		}
		tl, err := v.Timeline(orders, in.ID)
		if err != nil {
			return err
		}
		wantRelease := 0
		if slices.ContainsFunc(tl.History, func(h saga.HistoryEntry) bool {
			return h.Kind == saga.KindStep && h.EventType == "stock.reserved"
		}) {
			wantRelease = 1 // the step registered the release before the order failed
		}
		if count("customer.notify") != 1 || count("stock.release") != wantRelease {
			var sent []string
			for _, c := range v.Commands {
				sent = append(sent, c.Type+"/"+c.Correlation)
			}
			return fmt.Errorf("failed order %s (%s): compensations notify=%d release=%d, want 1 and %d; sent %v; history %v",
				in.ID, in.Reason, count("customer.notify"), count("stock.release"), wantRelease, sent, tl.History)
		}
	default:
		return fmt.Errorf("order %s is still %s", in.ID, in.Status)
	}
	return nil
}

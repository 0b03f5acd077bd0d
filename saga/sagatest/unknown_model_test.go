package sagatest_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// misreading is shipping whose start step declares a read model under a
// misspelt name: no model of that name is given, so the step could never
// run.
func misreading() *saga.Saga[struct{}] {
	s := saga.New[struct{}]("misreading", nil)
	saga.StartOn(s, func(e Placed, _ events.Envelope) string { return e.ID },
		func(st *saga.Step[struct{}], e Placed) error { return st.Send(Ship(e)) },
		saga.Reads("order_sumery"))
	return s
}

// failureTB records a fixture's failure instead of failing the test.
type failureTB struct {
	testing.TB
	mu     sync.Mutex
	failed []string
}

func (f *failureTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = append(f.failed, fmt.Sprintf(format, args...))
}

func (f *failureTB) FailNow() { runtime.Goexit() }

// TestFixtureRefusesAReadModelItWasNotGiven: a step reading a model the
// fixture does not have would park for good and When would say nothing,
// so an expectation that nothing is sent would pass on a step that never
// ran. New refuses the definition, naming the model.
func TestFixtureRefusesAReadModelItWasNotGiven(t *testing.T) {
	t.Parallel()
	tb := &failureTB{TB: t}
	done := make(chan *sagatest.Fixture)
	go func() {
		var fx *sagatest.Fixture
		defer func() { done <- fx }()
		fx = sagatest.New(tb, &sagatest.Config{
			Registry: shippingRegistry(), Sagas: []saga.Definition{misreading()},
			Models: map[string]sagatest.Model{"order_summary": nil},
		})
	}()
	require.Nil(t, <-done, "New returned a fixture")
	require.Len(t, tb.failed, 1)
	require.Contains(t, tb.failed[0], `saga.Reads("order_sumery"), which is not in Config.Models`)

	// Given the model, the same definition runs.
	fx := sagatest.New(t, &sagatest.Config{
		Registry: shippingRegistry(), Sagas: []saga.Definition{misreading()},
		Models: map[string]sagatest.Model{"order_sumery": nil},
	})
	fx.When(sagatest.Event{Stream: "order-1", Data: Placed{ID: "1"}}).ExpectCommands(Ship{ID: "1"})
}

// TestSimulationRefusesAReadModelItWasNotGiven: the simulator would report
// its final state with the step still parked, and a seed whose invariants
// do not look at statuses would pass.
func TestSimulationRefusesAReadModelItWasNotGiven(t *testing.T) {
	t.Parallel()
	cfg := &sagatest.SimConfig{
		Registry: shippingRegistry(),
		Sagas:    func(saga.Store) []saga.Definition { return []saga.Definition{misreading()} },
		Models:   map[string]sagatest.Model{"order_summary": nil},
		Events:   []sagatest.Event{{Stream: "order-1", Data: Placed{ID: "1"}}},
	}
	err := sagatest.SimulateSeed(t.Context(), cfg, 1)
	require.Error(t, err)
	require.True(t, strings.Contains(err.Error(), `saga.Reads("order_sumery"), which is not in SimConfig.Models`), err.Error())
}

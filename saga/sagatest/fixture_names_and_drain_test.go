package sagatest_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestHistoryRefusesAnUnknownSagaType: History of a saga type the
// fixture does not run (a misspelt one) fails the test, as Instance and
// ExpectStatus do, instead of returning an empty timeline on which any
// "nothing was ignored" check passes.
func TestHistoryRefusesAnUnknownSagaType(t *testing.T) {
	t.Parallel()
	tb := &failingTB{T: t}
	f := sagatest.New(tb, &sagatest.Config{Registry: shippingRegistry(), Sagas: []saga.Definition{shipping()}})
	f.When(sagatest.Event{Stream: "order-1", Data: Placed{ID: "1"}})
	// A test that checks an event for a missing instance was recorded as
	// ignored, with the saga type misspelt:
	f.When(sagatest.Event{Stream: "order-2", Data: Shipped{ID: "2"}})
	require.NotEmpty(t, f.History("shipping", "2").Ignored, "the real type records the ignored event")
	var tl saga.Timeline
	require.True(t, fails(tb, func() { tl = f.History("shipment_typo", "2") }),
		"History of a saga type the fixture does not run must fail, not return %+v", tl)
}

// TestReleasedModelParksNoQueuedStep: releasing the one held model runs
// the parked step and then the step queued behind it, each once: the
// fixture's read models catch up between the steps of a drained queue
// (the queued step used to park again, on the released model, behind the
// command the first step had just sent: two parks for one held model).
func TestReleasedModelParksNoQueuedStep(t *testing.T) {
	t.Parallel()
	s := saga.New[struct{}]("queued", nil)
	saga.StartOn(s, func(e Placed, _ events.Envelope) string { return e.ID },
		func(st *saga.Step[struct{}], e Placed) error { return st.Send(Ship(e)) }, saga.Reads("m"))
	saga.On(s, func(e Shipped, _ events.Envelope) string { return e.ID },
		func(st *saga.Step[struct{}], _ Shipped) error { st.Complete(); return nil }, saga.Reads("m"))
	f := sagatest.New(t, &sagatest.Config{
		Registry: shippingRegistry(), Sagas: []saga.Definition{s},
		Models: map[string]sagatest.Model{"m": nil},
	})
	f.HoldModel("m")
	f.When(sagatest.Event{Stream: "order-1", Data: Placed{ID: "1"}}, sagatest.Event{Stream: "order-1", Data: Shipped{ID: "1"}})
	f.ExpectParked("queued", "1", "m")
	f.ReleaseModel("m")
	f.ExpectCommands(Ship{ID: "1"}).ExpectStatus("queued", "1", saga.StatusCompleted)
	var kinds []string
	for _, h := range f.History("queued", "1").History {
		kinds = append(kinds, h.Kind)
	}
	assert.Equal(t, 1.0, testutil.ToFloat64(f.Engine().Metrics().Parks.WithLabelValues("queued")), "parks counted")
	assert.Equal(t, 1, strings.Count(strings.Join(kinds, " "), saga.KindParked), "one park (the held model's): %v", kinds)
}

// TestReleaseOfALongQueueSettles: releasing the model that holds a step
// with a thousand messages queued behind it runs them all: the fixture
// drains one step per pass, and a long queue takes many passes, not one
// Settle round each (the rounds gave up at 1,000).
func TestReleaseOfALongQueueSettles(t *testing.T) {
	t.Parallel()
	s := saga.New[int]("counter", nil)
	saga.StartOn(s, func(e Placed, _ events.Envelope) string { return e.ID },
		func(*saga.Step[int], Placed) error { return nil }, saga.Reads("m"))
	saga.On(s, func(e Shipped, _ events.Envelope) string { return e.ID },
		func(st *saga.Step[int], _ Shipped) error { *st.State()++; return nil })
	f := sagatest.New(t, &sagatest.Config{
		Registry: shippingRegistry(), Sagas: []saga.Definition{s},
		Models: map[string]sagatest.Model{"m": nil},
	})
	f.HoldModel("m")
	evs := []sagatest.Event{{Stream: "order-1", Data: Placed{ID: "1"}}}
	for range 1000 {
		evs = append(evs, sagatest.Event{Stream: "order-1", Data: Shipped{ID: "1"}})
	}
	f.When(evs...)
	f.ExpectParked("counter", "1", "m")
	f.ReleaseModel("m")
	require.Equal(t, 1000, sagatest.State[int](f, "counter", "1"))
}

package sagatest_test

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestExpectParkedWantsAStepWaitingForModels: ExpectParked passes on a
// step parked waiting for read models (given them, or given none), and
// fails on a step parked for a retry, which waits for no model, whether
// it is given models or not, and on a step waiting for other models. The
// retry's cause (a plain error or saga.RetryAfter) is random.
func TestExpectParkedWantsAStepWaitingForModels(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	retryAfter := rand.New(rand.NewPCG(seed, 41)).IntN(2) == 0
	s := saga.New[struct{}]("parking", nil)
	saga.StartOn(s, func(e Placed, _ events.Envelope) string { return e.ID },
		func(*saga.Step[struct{}], Placed) error {
			if retryAfter {
				return saga.RetryAfter(time.Minute)
			}
			return errors.New("the service is down for now")
		}, saga.Reads("m"))
	tb := &failingTB{T: t}
	f := sagatest.New(tb, &sagatest.Config{
		Registry: shippingRegistry(), Sagas: []saga.Definition{s},
		Models: map[string]sagatest.Model{"m": nil, "n": nil},
	})

	f.When(sagatest.Event{Stream: "order-retry", Data: Placed{ID: "retry"}})
	f.ExpectStatus("parking", "retry", saga.StatusParked)
	require.True(t, fails(tb, func() { f.ExpectParked("parking", "retry") }), "a retry park waits for no model")
	require.True(t, fails(tb, func() { f.ExpectParked("parking", "retry", "m") }))

	f.HoldModel("m")
	f.When(sagatest.Event{Stream: "order-gated", Data: Placed{ID: "gated"}})
	require.False(t, fails(tb, func() { f.ExpectParked("parking", "gated") }), "a gated park waits for a model")
	require.False(t, fails(tb, func() { f.ExpectParked("parking", "gated", "m") }))
	require.True(t, fails(tb, func() { f.ExpectParked("parking", "gated", "n") }), "it waits for m, not n")
	require.True(t, fails(tb, func() { f.ExpectParked("parking", "gated", "m", "n") }))
}

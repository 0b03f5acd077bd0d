package sagatest_test

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// errFailNow is what failingTB panics with where testing.T would stop the
// test's goroutine.
var errFailNow = errors.New("FailNow")

// failingTB records failures of fixture assertions instead of failing the
// test, so a test can check that an assertion fails.
type failingTB struct {
	*testing.T
	failed bool
}

func (f *failingTB) Errorf(string, ...any) { f.failed = true }
func (f *failingTB) FailNow()              { f.failed = true; panic(errFailNow) }

// fails reports whether check failed an assertion on tb.
func fails(tb *failingTB, check func()) (failed bool) {
	tb.failed = false
	defer func() {
		if r := recover(); r != nil && r != errFailNow { //nolint:errorlint // the sentinel itself
			panic(r)
		}
		failed = tb.failed
	}()
	check()
	return
}

// TestExpectTimersChecksTheWholeSet: ExpectTimers passes on exactly the
// active timers and their due times, and fails on a timer missing, one too
// many, or one due at another time.
func TestExpectTimersChecksTheWholeSet(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 13))
	for range 20 {
		want := map[string]time.Duration{}
		for i := range rng.IntN(5) {
			want[fmt.Sprint("t", i)] = time.Duration(1+rng.Int64N(int64(time.Hour))) * time.Nanosecond
		}
		s := saga.New[struct{}]("timed", nil)
		saga.StartOn(s, func(e Placed, _ events.Envelope) string { return e.ID },
			func(st *saga.Step[struct{}], _ Placed) error {
				for name, d := range want {
					st.Schedule(name, d)
				}
				return nil
			})
		tb := &failingTB{T: t}
		f := sagatest.New(tb, &sagatest.Config{Registry: shippingRegistry(), Sagas: []saga.Definition{s}})
		f.When(sagatest.Event{Stream: "order-1", Data: Placed{ID: "1"}})
		require.False(t, fails(tb, func() { f.ExpectTimers("timed", "1", maps.Clone(want)) }), "the exact set passes")
		if len(want) == 0 {
			require.False(t, fails(tb, func() { f.ExpectTimers("timed", "1", nil) }), "nil means none")
		}
		extra := maps.Clone(want)
		extra["other"] = time.Minute
		require.True(t, fails(tb, func() { f.ExpectTimers("timed", "1", extra) }), "a timer that is not active")
		for name := range want {
			fewer := maps.Clone(want)
			delete(fewer, name)
			require.True(t, fails(tb, func() { f.ExpectTimers("timed", "1", fewer) }), "%s is active but not expected", name)
			moved := maps.Clone(want)
			moved[name]++
			require.True(t, fails(tb, func() { f.ExpectTimers("timed", "1", moved) }), "%s is due at another time", name)
		}
	}
}

// TestAdvanceRefusesToGoBack: Advance moves the virtual clock forward;
// a negative duration, drawn at random, fails the test and leaves the
// clock where it was, while zero and positive ones move it by that much.
func TestAdvanceRefusesToGoBack(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 14))
	tb := &failingTB{T: t}
	f := sagatest.New(tb, &sagatest.Config{Registry: shippingRegistry(), Sagas: []saga.Definition{shipping()}})
	for range 20 {
		before := f.Clock().Now()
		d := -time.Duration(1 + rng.Int64N(int64(24*time.Hour)))
		require.True(t, fails(tb, func() { f.Advance(d) }), "Advance(%s)", d)
		require.Equal(t, before, f.Clock().Now(), "Advance(%s) moved the clock", d)
		d = time.Duration(rng.Int64N(int64(time.Hour)))
		require.False(t, fails(tb, func() { f.Advance(d) }), "Advance(%s)", d)
		require.Equal(t, before.Add(d), f.Clock().Now())
	}
}

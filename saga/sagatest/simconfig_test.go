package sagatest_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

func simSeed(t *testing.T) uint64 {
	t.Helper()
	seed := rand.Uint64() >> 1 // room for FirstSeed + Seeds
	t.Logf("seed %d", seed)
	return seed
}

// errStop is what an invariant returns at the end to see the trace.
var errStop = errors.New("stop to see the trace")

// faultCounts is what one simulated seed shows of the faults it met,
// counted over the whole run (the trace keeps only the last actions).
type faultCounts struct {
	restarts   int // engines after the first: each crash restarts it
	duplicates float64
	shipCalls  map[string]int // calls of the command handler by order
	trace      string
}

// countFaults runs one seed of the shipping process with n orders and
// crash and duplicate as SimConfig's Crash and Duplicate.
func countFaults(t *testing.T, seed uint64, n int, crash, duplicate float64) faultCounts {
	t.Helper()
	var mu sync.Mutex
	fc := faultCounts{shipCalls: map[string]int{}}
	var engines []*saga.Engine
	var evs []sagatest.Event
	for i := range n {
		id := fmt.Sprint(i)
		evs = append(evs, sagatest.Event{Stream: "order-" + id, Data: Placed{ID: id}})
	}
	cfg := &sagatest.SimConfig{
		Registry: shippingRegistry(),
		Sagas:    func(saga.Store) []saga.Definition { return []saga.Definition{shipping()} },
		Commands: func(store saga.Store) []cqrs.CommandHandler {
			return []cqrs.CommandHandler{command.Handle("ship", store, shipments, func(c Ship) string { return "shipment-" + c.ID },
				func(_ context.Context, _ int, c Ship) ([]any, error) {
					mu.Lock()
					fc.shipCalls[c.ID]++
					mu.Unlock()
					return []any{Shipped(c)}, nil
				})}
		},
		Events:    evs,
		Crash:     crash,
		Duplicate: duplicate,
		Invariants: []sagatest.Invariant{func(v *sagatest.SimView) error {
			// Invariants run after every action, so every engine the
			// simulation builds is seen.
			if len(engines) == 0 || engines[len(engines)-1] != v.Engine {
				engines = append(engines, v.Engine)
			}
			if !v.Final {
				return nil
			}
			list, err := v.Instances("shipping")
			if err != nil {
				return err
			}
			if len(list) != n {
				return fmt.Errorf("%d instances, want %d", len(list), n)
			}
			for _, in := range list {
				if in.Status != saga.StatusCompleted {
					return fmt.Errorf("order %s is %s", in.ID, in.Status)
				}
			}
			return errStop
		}},
	}
	err := sagatest.SimulateSeed(t.Context(), cfg, seed)
	require.ErrorIs(t, err, errStop, "seed %d settles with every order completed", seed)
	require.ErrorContains(t, err, "invariant 0 failed at the end")
	fc.restarts = len(engines) - 1
	for _, e := range engines {
		fc.duplicates += testutil.ToFloat64(e.Metrics().Duplicates.WithLabelValues("shipping"))
	}
	fc.trace = err.Error()
	return fc
}

// TestSimConfigNegativeTurnsFaultsOff: SimConfig.Crash and Duplicate "a
// negative value turns the fault off": with both negative, no unit is
// crashed (the engine is never restarted, and the trace shows no crash)
// and no delivery is repeated (the engine counts no duplicate, the
// command handler runs once per command, and every delivery in the trace
// is x1), over several random seeds. With both left at 0 (their defaults,
// 0.1 and 0.15) the same seeds do crash and duplicate deliveries: 0 is not
// "off".
func TestSimConfigNegativeTurnsFaultsOff(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(simSeed(t), 6))
	first := rng.Uint64() >> 1
	n := 6 + rng.IntN(6)
	t.Logf("%d orders, seeds from %d", n, first)
	var restarts int
	var duplicates float64
	for seed := first; seed < first+6; seed++ {
		off := countFaults(t, seed, n, -1-rng.Float64(), -1-rng.Float64())
		require.Zero(t, off.restarts, "seed %d: Crash < 0 crashed a unit (the engine was restarted)", seed)
		require.Zero(t, off.duplicates, "seed %d: Duplicate < 0 repeated a saga delivery", seed)
		require.Len(t, off.shipCalls, n)
		for id, calls := range off.shipCalls {
			require.Equal(t, 1, calls, "seed %d: order %s: the command was delivered once", seed, id)
		}
		require.NotContains(t, off.trace, "crash before the commit", "seed %d", seed)
		require.NotContains(t, off.trace, " x2", "seed %d", seed)
		require.Contains(t, off.trace, " x1", "seed %d: the trace lists the deliveries", seed)

		on := countFaults(t, seed, n, 0, 0)
		restarts += on.restarts
		duplicates += on.duplicates
	}
	require.Positive(t, restarts, "with Crash at its default, units crash")
	require.Positive(t, duplicates, "with Duplicate at its default, deliveries repeat")
}

// Tick and Arm drive the timer sagas below.
type (
	Tick struct {
		ID string `json:"id"`
	}
	Arm struct {
		ID    string        `json:"id"`
		After time.Duration `json:"after"`
	}
)

func timerRegistry() *events.Registry {
	reg := events.NewRegistry()
	events.Register[Tick](reg, "sim.tick")
	events.Register[Arm](reg, "sim.arm")
	return reg
}

// TestSimConfigMaxStepsDidNotSettle: a seed that has not settled within
// SimConfig.MaxSteps actions fails saying so; MaxSteps defaults to
// DefaultMaxSteps (20,000). A random small MaxSteps stops an ordinary
// scenario; a process that never settles (a timer that reschedules itself
// every second, so the 24h horizon never runs out first) is stopped at the
// default.
func TestSimConfigMaxStepsDidNotSettle(t *testing.T) {
	t.Parallel()
	require.Equal(t, 20_000, sagatest.DefaultMaxSteps)
	rng := rand.New(rand.NewPCG(simSeed(t), 9))

	// Invariants run after each action; the scenario's first actions all
	// deliver or wait (nothing settles before its four orders are taken),
	// so the count of runs is the count of actions.
	small := 1 + rng.IntN(5)
	actions := 0
	cfg := shippingConfig(func(v *sagatest.SimView) error {
		if !v.Final {
			actions++
		}
		return nil
	})
	cfg.MaxSteps = small
	err := sagatest.SimulateSeed(t.Context(), cfg, rng.Uint64()>>1)
	require.ErrorContains(t, err, fmt.Sprintf("did not settle within %d actions (a step that keeps retrying, or timers that keep firing?)", small))
	require.Equal(t, small, actions, "the seed stopped after MaxSteps actions")

	ticker := saga.New[struct{}]("ticker", nil)
	saga.StartOn(ticker, func(e Tick, _ events.Envelope) string { return e.ID },
		func(st *saga.Step[struct{}], _ Tick) error { st.Schedule("tick", time.Second); return nil })
	saga.OnTimeout(ticker, "tick", func(st *saga.Step[struct{}], _ saga.Timeout) error {
		st.Schedule("tick", time.Second)
		return nil
	})
	forever := &sagatest.SimConfig{
		Registry: timerRegistry(),
		Sagas:    func(saga.Store) []saga.Definition { return []saga.Definition{ticker} },
		Events:   []sagatest.Event{{Stream: "tick-1", Data: Tick{ID: "1"}}},
		Crash:    -1, Duplicate: -1, // keep it quick
	}
	err = sagatest.SimulateSeed(t.Context(), forever, rng.Uint64()>>1)
	require.ErrorContains(t, err, "did not settle within 20000 actions")
}

// TestSimConfigHorizonDefaultsTo24h: while settling, the simulation fires
// the timers due within SimConfig.Horizon of the start, 24h by default:
// a timer due within 24h (at random, and at 24h exactly) fires and its
// handler runs; one due later (24h and 1ns, and at random up to 72h) does
// not fire, and the seed still settles, leaving it pending.
func TestSimConfigHorizonDefaultsTo24h(t *testing.T) {
	t.Parallel()
	require.Equal(t, 24*time.Hour, sagatest.DefaultHorizon)
	rng := rand.New(rand.NewPCG(simSeed(t), 24))
	arm := saga.New[struct{}]("arm", nil)
	saga.StartOn(arm, func(e Arm, _ events.Envelope) string { return e.ID },
		func(st *saga.Step[struct{}], e Arm) error { st.Schedule("t", e.After); return nil })
	saga.OnTimeout(arm, "t", func(st *saga.Step[struct{}], _ saga.Timeout) error { st.Complete(); return nil })
	day := 24 * time.Hour
	for _, c := range []struct {
		after time.Duration
		fires bool
	}{
		{1 + time.Duration(rng.Int64N(int64(day))), true},
		{day, true},
		{day + 1, false},
		{day + 1 + time.Duration(rng.Int64N(int64(2*day))), false},
	} {
		var final saga.Info
		cfg := &sagatest.SimConfig{
			Registry: timerRegistry(),
			Sagas:    func(saga.Store) []saga.Definition { return []saga.Definition{arm} },
			Events:   []sagatest.Event{{Stream: "arm-1", Data: Arm{ID: "1", After: c.after}}},
			Invariants: []sagatest.Invariant{func(v *sagatest.SimView) error {
				if !v.Final {
					return nil
				}
				list, err := v.Instances("arm")
				if err != nil || len(list) != 1 {
					return fmt.Errorf("instances %v: %w", list, err)
				}
				final = list[0]
				return nil
			}},
		}
		require.NoError(t, sagatest.SimulateSeed(t.Context(), cfg, rng.Uint64()>>1), "a timer due after %s", c.after)
		if c.fires {
			require.Equal(t, saga.StatusCompleted, final.Status, "a timer due after %s fires within the default horizon", c.after)
			require.Empty(t, final.Timers)
		} else {
			require.Equal(t, saga.StatusRunning, final.Status, "a timer due after %s is past the default horizon", c.after)
			require.Equal(t, sagatest.DefaultStart.Add(c.after), final.Timers["t"], "it stays pending")
		}
	}
}

// TestSimConfigSeedsDefaultsTo20: Simulate runs DefaultSeeds (20) seeds by
// default, from FirstSeed (random here) on, each once.
func TestSimConfigSeedsDefaultsTo20(t *testing.T) {
	t.Parallel()
	require.Equal(t, 20, sagatest.DefaultSeeds)
	require.InDelta(t, 0.1, sagatest.DefaultCrash, 0)
	require.InDelta(t, 0.15, sagatest.DefaultDuplicate, 0)
	first := simSeed(t)
	seen := map[uint64]int{}
	var mu sync.Mutex
	cfg := shippingConfig(func(v *sagatest.SimView) error {
		if v.Final {
			mu.Lock()
			seen[v.Seed]++
			mu.Unlock()
		}
		return nil
	})
	cfg.FirstSeed = first
	sagatest.Simulate(t, cfg)
	want := map[uint64]int{}
	for i := range uint64(20) {
		want[first+i] = 1
	}
	require.Equal(t, want, seen, "seeds %d to %d, each once", first, first+19)
}

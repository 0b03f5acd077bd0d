package sagatest_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

func shippingConfig(inv ...sagatest.Invariant) *sagatest.SimConfig {
	var evs []sagatest.Event
	for i := range 4 {
		id := fmt.Sprint(i)
		evs = append(evs, sagatest.Event{Stream: "order-" + id, Data: Placed{ID: id}})
	}
	return &sagatest.SimConfig{
		Registry: shippingRegistry(),
		Sagas:    func(saga.Store) []saga.Definition { return []saga.Definition{shipping()} },
		Commands: func(store saga.Store) []cqrs.CommandHandler {
			return []cqrs.CommandHandler{command.Handle("ship", store, shipments, func(c Ship) string { return "shipment-" + c.ID },
				func(_ context.Context, _ int, c Ship) ([]any, error) { return []any{Shipped(c)}, nil })}
		},
		Events:     evs,
		Invariants: inv,
	}
}

// TestSimulateSeedReplays: a seed is a schedule. The same seed gives the
// same commands in the same order; other seeds give other orders.
func TestSimulateSeedReplays(t *testing.T) {
	t.Parallel()
	record := func(seed uint64) string {
		var got string
		cfg := shippingConfig(func(v *sagatest.SimView) error {
			if v.Final {
				var parts []string
				for _, c := range v.Commands {
					parts = append(parts, c.Correlation)
				}
				got = strings.Join(parts, ",")
			}
			return nil
		})
		require.NoError(t, sagatest.SimulateSeed(t.Context(), cfg, seed))
		return got
	}
	first := record(3)
	require.Len(t, strings.Split(first, ","), 4, "one shipment per order")
	require.Equal(t, first, record(3), "seed 3 replays")
	orders := map[string]bool{first: true}
	for seed := range uint64(10) {
		orders[record(seed)] = true
	}
	require.Greater(t, len(orders), 1, "the seeds reorder the instances")
}

// TestSimulateSeedReportsTheFailure: an invariant that fails names the
// seed, says when, and lists the actions that led there.
func TestSimulateSeedReportsTheFailure(t *testing.T) {
	t.Parallel()
	broken := errors.New("two orders shipped")
	cfg := shippingConfig(func(v *sagatest.SimView) error {
		if len(v.Commands) >= 2 {
			return broken
		}
		return nil
	})
	err := sagatest.SimulateSeed(t.Context(), cfg, 11)
	require.ErrorIs(t, err, broken)
	require.ErrorContains(t, err, "simulation seed 11: invariant 0 failed during the run")
	require.ErrorContains(t, err, "last actions:")
	require.ErrorContains(t, err, "saga order.placed")
}

// TestSimulateInjectsFaults: over a range of seeds the simulation crashes
// units (restarting the engine), duplicates deliveries and lets timers and
// models race, and the process still ends with one shipment per order.
func TestSimulateInjectsFaults(t *testing.T) {
	t.Parallel()
	var crashes, duplicates int
	cfg := shippingConfig(func(v *sagatest.SimView) error {
		for i := range 4 {
			if n := len(v.CommandsOf("shipment.request", fmt.Sprint(i))); n > 1 {
				return fmt.Errorf("order %d: %d shipment requests", i, n)
			}
		}
		if !v.Final {
			return nil
		}
		list, err := v.Instances("shipping")
		if err != nil {
			return err
		}
		for _, in := range list {
			if in.Status != saga.StatusCompleted {
				return fmt.Errorf("order %s is %s", in.ID, in.Status)
			}
		}
		return nil
	})
	cfg.Crash, cfg.Duplicate = 0.3, 0.3
	for seed := range uint64(20) {
		err := sagatest.SimulateSeed(t.Context(), cfg, seed)
		require.NoError(t, err, "seed %d", seed)
	}
	// The faults are visible in a failing run's trace; provoke one to count them.
	cfg.Invariants = append(cfg.Invariants, func(v *sagatest.SimView) error {
		if v.Final {
			return errors.New("stop")
		}
		return nil
	})
	for seed := range uint64(20) {
		err := sagatest.SimulateSeed(t.Context(), cfg, seed)
		require.Error(t, err)
		crashes += strings.Count(err.Error(), "crash before the commit")
		duplicates += strings.Count(err.Error(), " x2")
	}
	require.Positive(t, crashes, "units were crashed")
	require.Positive(t, duplicates, "deliveries were duplicated")
}

// TestSimulateRejectsBadConfig: a missing piece is a clear error.
func TestSimulateRejectsBadConfig(t *testing.T) {
	t.Parallel()
	cfg := shippingConfig()
	cfg.Events = nil
	require.ErrorContains(t, sagatest.SimulateSeed(t.Context(), cfg, 0), "SimConfig.Events is empty")
	cfg = shippingConfig()
	cfg.Registry = nil
	require.ErrorContains(t, sagatest.SimulateSeed(t.Context(), cfg, 0), "SimConfig.Registry is nil")

	// Seeds past what -seed (an int64) can replay are refused; the last
	// replayable range is not.
	k := rand.Uint64N(1000)
	cfg = shippingConfig()
	cfg.FirstSeed, cfg.Seeds = math.MaxInt64-k, int(k)+2
	require.ErrorContains(t, sagatest.SimulateSeed(t.Context(), cfg, 0), "the largest seed -seed can replay")
	cfg.Seeds = int(k) + 1
	require.NoError(t, sagatest.SimulateSeed(t.Context(), cfg, 0))
}

// TestSimulate runs the seed range as subtests.
func TestSimulate(t *testing.T) {
	t.Parallel()
	sagatest.Simulate(t, shippingConfig())
}

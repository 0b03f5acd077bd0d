package events_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

type (
	regA struct{ N int }
	regB struct{ N int }
	regC struct{ N int }
	regD struct{ N int }
)

// TestRegistryFollowsAModel runs random Register and Alias calls against a
// model of the documented rules: a name is registered once (as a type or an
// alias), a Go type once, and an alias needs a registered target. After
// every call, NameOf, CanonicalName, StoredNames and Decode answer as the
// model says.
func TestRegistryFollowsAModel(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	names := []string{"a", "b", "c", "d", "e", "f"}
	register := []func(*events.Registry, string) error{
		func(r *events.Registry, n string) error { return events.RegisterSafely[regA](r, n, 1) },
		func(r *events.Registry, n string) error { return events.RegisterSafely[regB](r, n, 1) },
		func(r *events.Registry, n string) error { return events.RegisterSafely[regC](r, n, 1) },
		func(r *events.Registry, n string) error { return events.RegisterSafely[regD](r, n, 1) },
	}
	values := []any{regA{}, regB{}, regC{}, regD{}}

	for range 200 {
		reg := events.NewRegistry()
		nameType := map[string]int{} // stored name -> Go type index
		typeName := map[int]string{} // Go type index -> registered name
		for range 1 + rng.IntN(12) {
			name := names[rng.IntN(len(names))]
			if rng.IntN(2) == 0 {
				ti := rng.IntN(len(register))
				_, nameTaken := nameType[name]
				_, typeTaken := typeName[ti]
				err := register[ti](reg, name)
				if nameTaken || typeTaken {
					require.Error(t, err, "register %T as %q", values[ti], name)
					if nameTaken {
						require.ErrorContains(t, err, "registered twice")
					} else {
						require.ErrorContains(t, err, "already registered")
					}
					continue
				}
				require.NoError(t, err)
				nameType[name], typeName[ti] = ti, name
			} else {
				target := names[rng.IntN(len(names))]
				ti, known := nameType[target]
				_, nameTaken := nameType[name]
				err := reg.Alias(name, target)
				switch {
				case !known:
					require.ErrorIs(t, err, events.ErrUnknownType, "alias %q to unknown %q", name, target)
				case nameTaken:
					require.ErrorContains(t, err, "registered twice", "alias %q taken", name)
				default:
					require.NoError(t, err)
					nameType[name] = ti
				}
			}
		}

		for ti, v := range values {
			got, version, err := reg.NameOf(v)
			want, ok := typeName[ti]
			if !ok {
				require.ErrorIs(t, err, events.ErrUnknownType)
				continue
			}
			require.NoError(t, err)
			require.Equal(t, want, got)
			require.Equal(t, 1, version)
			got, _, err = reg.NameOf(reflect.New(reflect.TypeOf(v)).Interface())
			require.NoError(t, err, "a pointer names its element's type")
			require.Equal(t, want, got)
		}
		for _, n := range names {
			ti, ok := nameType[n]
			canonical, cok := reg.CanonicalName(n)
			require.Equal(t, ok, cok, n)
			if !ok {
				require.Nil(t, reg.StoredNames(n))
				_, err := reg.Decode(events.Envelope{Type: n, Payload: json.RawMessage(`{"N":1}`)})
				require.ErrorIs(t, err, events.ErrUnknownType)
				continue
			}
			require.Equal(t, typeName[ti], canonical, "%q resolves to the name its Go type is registered under", n)
			var stored []string
			for m, tj := range nameType {
				if tj == ti {
					stored = append(stored, m)
				}
			}
			slices.Sort(stored)
			require.Equal(t, stored, reg.StoredNames(n))
			v, err := reg.Decode(events.Envelope{Type: n, SchemaVersion: 1, Payload: json.RawMessage(`{"N":7}`)})
			require.NoError(t, err)
			require.Equal(t, fmt.Sprintf("%T", values[ti]), fmt.Sprintf("%T", v), "%q decodes into its Go type", n)
		}
	}
}

// TestRegisterRefusesBadSchemas checks the documented programmer errors of
// versioned registration, and that Register panics where RegisterSafely
// returns them.
func TestRegisterRefusesBadSchemas(t *testing.T) {
	t.Parallel()
	up := func(p json.RawMessage) (json.RawMessage, error) { return p, nil }
	for name, err := range map[string]error{
		"version 0":          events.RegisterSafely[regA](events.NewRegistry(), "a", 0),
		"nil upcaster":       events.RegisterSafely[regA](events.NewRegistry(), "a", 2, events.Upcaster{From: 1}),
		"upcaster from 0":    events.RegisterSafely[regA](events.NewRegistry(), "a", 2, events.Upcaster{From: 0, Func: up}),
		"upcaster from head": events.RegisterSafely[regA](events.NewRegistry(), "a", 2, events.Upcaster{From: 2, Func: up}),
		"two upcasters":      events.RegisterSafely[regA](events.NewRegistry(), "a", 3, events.Upcaster{From: 1, Func: up}, events.Upcaster{From: 1, Func: up}),
	} {
		require.Error(t, err, name)
	}
	reg := events.NewRegistry()
	events.Register[regA](reg, "a")
	require.Panics(t, func() { events.Register[regA](reg, "b") }, "a Go type registered twice")
	require.Panics(t, func() { events.Register[regB](reg, "a") }, "a name registered twice")
	require.Panics(t, func() { events.RegisterVersioned[regC](reg, "c", 0) })

	// A stored version newer than the build's, or one with no upcaster
	// path, is a DecodeError that says so.
	events.RegisterVersioned[regD](reg, "d", 3, events.Upcaster{From: 2, Func: up})
	_, err := reg.Decode(events.Envelope{Type: "d", SchemaVersion: 4, Payload: json.RawMessage(`{}`)})
	require.ErrorIs(t, err, events.ErrDecode)
	require.ErrorContains(t, err, "newer")
	_, err = reg.Decode(events.Envelope{Type: "d", SchemaVersion: 1, Payload: json.RawMessage(`{}`)})
	require.ErrorIs(t, err, events.ErrDecode)
	require.ErrorContains(t, err, "no upcaster from v1")
	_, err = events.DecodeAs[regB](reg, events.Envelope{Type: "a", SchemaVersion: 1, Payload: json.RawMessage(`{}`)})
	require.ErrorIs(t, err, events.ErrDecode, "DecodeAs into another Go type")
}

// TestRegistryIsSafeForConcurrentUse registers, aliases and decodes from
// many goroutines at once; the race detector is the check.
func TestRegistryIsSafeForConcurrentUse(t *testing.T) {
	t.Parallel()
	reg := events.NewRegistry()
	events.Register[regA](reg, "a")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				_ = reg.Alias(fmt.Sprintf("a.%d.%d", i, j), "a")
				_, _ = reg.Decode(events.Envelope{Type: "a", Payload: json.RawMessage(`{"N":1}`)})
				_, _, _ = reg.NameOf(regA{})
				_ = reg.StoredNames("a")
				_, _ = reg.CanonicalName(fmt.Sprintf("a.%d.%d", i, j))
			}
		})
	}
	wg.Go(func() { _ = events.RegisterSafely[regB](reg, "b", 1) })
	wg.Wait()
	require.Len(t, reg.StoredNames("a"), 1+8*50)
}

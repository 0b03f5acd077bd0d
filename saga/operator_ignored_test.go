package saga_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// ignoredSagaNames sort around the '/' that ends the saga name in the
// ignored-message keys ('-' and '.' before it, '0' and '_' after), where
// a scan that skips from one saga type to the next could miss one.
var ignoredSagaNames = []string{"audit", "audit-log", "audit.v2", "audit0", "audit_x", "a", "b"}

// ignoredIDs include ids whose escaped form holds '%' or that end or
// begin like another.
var ignoredIDs = []string{"ghost", "ghost/2", "g%2F", "host", "gho"}

// TestOperatorFindsIgnoredMessagesAcrossSagaTypes: whatever saga types
// ignore which messages, FindIgnored returns for an id exactly the
// messages each type ignored for it, by type in name order, as Show
// lists them.
func TestOperatorFindsIgnoredMessagesAcrossSagaTypes(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		seeds := 10
		if mk != nil {
			seeds = 3
		}
		for seed := range uint64(seeds) {
			t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { findIgnored(t, mk, seed) })
		}
	})
}

func findIgnored(t *testing.T, mk storeMaker, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 11))
	perm := rng.Perm(len(ignoredSagaNames))
	names := make([]string, 3)
	for i := range names {
		names[i] = ignoredSagaNames[perm[i]]
	}
	// Saga type i correlates a Ping to the id of N's i-th base-5 digit,
	// and has no instances: it only starts on OrderPlaced.
	idOf := func(i, n int) string {
		for range i {
			n /= len(ignoredIDs)
		}
		return ignoredIDs[n%len(ignoredIDs)]
	}
	defs := make([]saga.Definition, len(names))
	for i, name := range names {
		s := saga.New[orderState](name, nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
		saga.On(s, func(e Ping, _ events.Envelope) string { return idOf(i, e.N) },
			func(*saga.Step[orderState], Ping) error { return nil })
		defs[i] = s
	}
	reg := registry()
	cfg := &sagatest.Config{Registry: reg, Sagas: defs}
	if mk != nil {
		cfg.Store = mk(t, reg)
	}
	fx := sagatest.New(t, cfg)

	want := map[string]map[string][]string{} // id -> saga -> event ids
	for range 12 {
		n := rng.IntN(125)
		evID := fx.Append(sagatest.Event{Stream: "pings", Data: Ping{OrderID: "x", N: n}}).EventIDs[0]
		require.NoError(t, fx.Settle())
		for i, name := range names {
			id := idOf(i, n)
			if want[id] == nil {
				want[id] = map[string][]string{}
			}
			want[id][name] = append(want[id][name], evID)
		}
	}

	ctx := context.Background()
	op, err := saga.NewOperator(&saga.OperatorConfig{Source: fx.Store(), Clock: fx.Clock()})
	require.NoError(t, err)
	// Ids no instance can have find nothing, and fail no listing.
	unaddressable := []string{"", strings.Repeat("x", saga.MaxInstanceIDLength+1+rng.IntN(2000)), "gh\x00ost", "\xff"}
	for _, id := range append(slices.Clone(ignoredIDs), append(unaddressable, "never")...) {
		found, err := op.FindIgnored(ctx, id)
		require.NoError(t, err)
		got := map[string][]string{}
		var order []string
		for _, f := range found {
			require.Equal(t, id, f.ID)
			order = append(order, f.Saga)
			for _, m := range f.Ignored {
				require.Equal(t, "order.ping", m.EventType)
				require.Contains(t, m.Reason, "no instance with this id")
				got[f.Saga] = append(got[f.Saga], m.EventID)
			}
			require.True(t, slices.IsSorted(got[f.Saga]), "in event id order")
			tl, err := op.Show(ctx, f.Saga, id)
			require.ErrorIs(t, err, saga.ErrNotFound)
			require.Equal(t, tl.Ignored, f.Ignored, "FindIgnored lists what Show lists")
		}
		require.True(t, slices.IsSorted(order), "by saga type: %v", order)
		if len(want[id]) == 0 {
			require.Empty(t, found, "id %q", id)
			continue
		}
		for _, evIDs := range want[id] {
			slices.Sort(evIDs)
		}
		require.Equal(t, want[id], got, "seed %d, sagas %v, id %q", seed, names, id)
	}
}

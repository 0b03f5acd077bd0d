package sagatest_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestSimViewRefusesAnUnknownSagaType: an invariant "every order ends
// completed" over a saga type the run does not define (a misspelt
// name) fails with SimView.Instances' error (and Timeline's) instead
// of holding over no instance. Here nothing ships, so no order completes.
func TestSimViewRefusesAnUnknownSagaType(t *testing.T) {
	cfg := shippingConfig(func(v *sagatest.SimView) error {
		if !v.Final {
			return nil
		}
		list, err := v.Instances("shipment_typo")
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
	cfg.Commands = nil // nothing ships: every order stays running
	err := sagatest.SimulateSeed(t.Context(), cfg, 1)
	require.ErrorContains(t, err, `defines no saga type "shipment_typo" (its types: shipping)`,
		"an invariant over a saga type the run does not have is refused, not vacuously true")

	cfg = shippingConfig(func(v *sagatest.SimView) error {
		_, err := v.Timeline("shipment_typo", "1")
		return err
	})
	require.ErrorContains(t, sagatest.SimulateSeed(t.Context(), cfg, 1), `defines no saga type "shipment_typo"`)
}

// TestSimInvariantMaySortItsView: an invariant that sorts what it is
// shown (to group events by stream) leaves the simulation it checks as it
// was: the read models, which apply the run's log by position, still
// apply every event once (they applied some twice and some never while
// the view shared the log).
func TestSimInvariantMaySortItsView(t *testing.T) {
	applied := map[string]int{}
	cfg := shippingConfig(func(v *sagatest.SimView) error {
		slices.SortFunc(v.Events, func(a, b events.Envelope) int { return strings.Compare(a.StreamID, b.StreamID) })
		return nil
	})
	cfg.Models = map[string]sagatest.Model{"audit": func(_ context.Context, _ feed.Rows, env events.Envelope) error {
		applied[env.ID]++
		return nil
	}}
	cfg.Crash, cfg.Duplicate = -1, -1
	require.NoError(t, sagatest.SimulateSeed(t.Context(), cfg, 1))
	var wrong []string
	for id, n := range applied {
		if n != 1 {
			wrong = append(wrong, fmt.Sprintf("%s applied %d times", id[len(id)-8:], n))
		}
	}
	require.Empty(t, wrong, "the read model applies each event once")
}

package sagatest_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// eventIDs is an invariant that records, at the end, every event of the
// run (commands included) with its id, causation and correlation, in
// feed order.
func eventIDs(got *string) sagatest.Invariant {
	return func(v *sagatest.SimView) error {
		if v.Final {
			var parts []string
			for _, env := range v.Events {
				parts = append(parts, fmt.Sprintf("%s %s %s id=%s causation=%s correlation=%s",
					env.StreamID, env.Type, env.Token, env.ID, env.Metadata.CausationID, env.Metadata.CorrelationID))
			}
			*got = strings.Join(parts, "\n")
		}
		return nil
	}
}

// TestSimulateSeedReplaysIDs: a seed fixes the run, ids included. Two runs
// of one seed store the same events under the same ids (those of
// SimConfig.Events given without one, and so those of the commands they
// start and their causation ids, which a failure's trace and an
// invariant's message name).
func TestSimulateSeedReplaysIDs(t *testing.T) {
	t.Parallel()
	seed := simSeed(t)
	record := func() string {
		var got string
		cfg := shippingConfig(eventIDs(&got))
		require.NoError(t, sagatest.SimulateSeed(t.Context(), cfg, seed))
		return got
	}
	first := record()
	require.NotEmpty(t, first)
	require.Equal(t, first, record(), "seed %d replays its events, ids included", seed)
}

// TestSimulateSeedReplaysDecisionsOnIDs: a handler that keys a decision
// on its event's id (a shard, an A/B split) decides the same in two runs
// of one seed.
func TestSimulateSeedReplaysDecisionsOnIDs(t *testing.T) {
	t.Parallel()
	pick := saga.New[struct{}]("pick", nil)
	saga.StartOn(pick, func(e Placed, _ events.Envelope) string { return e.ID },
		func(st *saga.Step[struct{}], e Placed) error {
			if id := st.Event().ID; id[len(id)-1] < '8' {
				return st.Send(Ship(e))
			}
			st.Complete()
			return nil
		})
	seed := simSeed(t)
	record := func() []string {
		var shipped []string
		cfg := &sagatest.SimConfig{
			Registry: shippingRegistry(),
			Sagas:    func(saga.Store) []saga.Definition { return []saga.Definition{pick} },
			Events:   orderEvents(16),
			Invariants: []sagatest.Invariant{func(v *sagatest.SimView) error {
				if v.Final {
					for _, c := range v.Commands {
						shipped = append(shipped, c.Correlation)
					}
					slices.Sort(shipped)
				}
				return nil
			}},
		}
		require.NoError(t, sagatest.SimulateSeed(t.Context(), cfg, seed))
		return shipped
	}
	require.Equal(t, record(), record(), "seed %d ships the same orders", seed)
}

// shipmentLogged is an event a raw command handler appends outside its
// unit.
type shipmentLogged struct {
	ID string `json:"id"`
}

// TestSimulateSeedReplaysIDsHandlersLeaveOut: events that a raw command
// handler appends without an id, through its unit or through the store
// it was given, get the same ids in two runs of one seed, so the saga
// they start or move sees the same event ids, under crashes and
// duplicates too.
func TestSimulateSeedReplaysIDsHandlersLeaveOut(t *testing.T) {
	t.Parallel()
	seed := simSeed(t)
	record := func() string {
		var got string
		reg := shippingRegistry()
		events.Register[shipmentLogged](reg, "shipment.logged")
		cfg := shippingConfig(eventIDs(&got))
		cfg.Registry = reg
		cfg.Crash, cfg.Duplicate = 0.2, 0.2
		cfg.Commands = func(store saga.Store) []cqrs.CommandHandler {
			return []cqrs.CommandHandler{cqrs.NewCommandHandler("ship-raw", func(ctx context.Context, c *Ship) error {
				u, ok := events.UnitFromContext(ctx)
				if !ok {
					return fmt.Errorf("ship %s: no unit in the handler's context", c.ID)
				}
				if _, err := u.Append(ctx, "shipment-"+c.ID, events.AnyVersion, events.Event{Data: Shipped(*c)}); err != nil {
					return err
				}
				_, err := store.Append(ctx, "shipment-log-"+c.ID, events.AnyVersion, events.Event{Data: shipmentLogged(*c)})
				return err
			})}
		}
		require.NoError(t, sagatest.SimulateSeed(t.Context(), cfg, seed))
		return got
	}
	first := record()
	require.Contains(t, first, "shipment.done")
	require.Contains(t, first, "shipment.logged")
	require.Equal(t, first, record(), "seed %d replays the handler's events, ids included", seed)
}

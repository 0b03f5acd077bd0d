package converge_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/projections"
	"github.com/converge-es/converge/saga"
)

type blPlaced struct {
	OrderID string `json:"order_id"`
}
type blNote struct {
	OrderID string `json:"order_id"`
	N       int    `json:"n"`
}
type blCharge struct {
	OrderID string `json:"order_id"`
}
type blCharged struct {
	OrderID string `json:"order_id"`
}

// TestGateStatsCountEveryGatedEvent: two events of one instance whose
// steps read a read model are two gated steps in GateStats (exported by
// `converge serve` as converge_saga_gated_steps_total), though both are
// gated at the same token: the instance's causal token, raised by the
// command its first step sent.
func TestGateStatsCountEveryGatedEvent(t *testing.T) {
	for _, name := range []string{"memory", "postgres"} {
		t.Run(name, func(t *testing.T) {
			reg := events.NewRegistry()
			events.Register[blPlaced](reg, "bl.placed")
			events.Register[blNote](reg, "bl.note")
			events.Register[blCharge](reg, "bl.charge")
			events.Register[blCharged](reg, "bl.charged")
			var store converge.Store
			if name == "memory" {
				st, err := memstore.New(&memstore.Config{Registry: reg})
				require.NoError(t, err)
				store = st
				t.Cleanup(func() { _ = st.Close() })
			} else {
				db := pgtest.New(t, &pgtest.Config{MaxConns: 8})
				st, err := pgstore.New(context.Background(), db.Pool, &pgstore.Config{Schema: db.Schema, Registry: reg})
				require.NoError(t, err)
				store = st
				t.Cleanup(func() { _ = st.Close() })
			}
			gateStatsOfABacklog(t, store)
		})
	}
}

func gateStatsOfABacklog(t *testing.T, store converge.Store) {
	t.Helper()
	ctx := context.Background()

	status := projections.New("bl_status", nil)
	projections.On(status, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e blPlaced) error {
		return tx.Table("orders").Put(ctx, e.OrderID, "placed")
	})
	type st struct{ Notes int }
	flow := saga.New[st]("blflow", nil)
	saga.StartOn(flow, func(e blPlaced, _ events.Envelope) string { return e.OrderID },
		func(s *saga.Step[st], e blPlaced) error { return s.Send(blCharge(e)) })
	saga.On(flow, func(e blNote, _ events.Envelope) string { return e.OrderID },
		func(s *saga.Step[st], _ blNote) error { s.State().Notes++; return nil }, saga.Reads("bl_status"))
	card := events.Aggregate[int]{Apply: func(n int, _ any) (int, error) { return n + 1, nil }}
	charge := command.Handle("bl-charge", store, card, func(c blCharge) string { return "card-" + c.OrderID },
		func(_ context.Context, _ int, c blCharge) ([]any, error) { return []any{blCharged(c)}, nil })

	// The instance's first event and two later ones are in the store
	// before the client starts (a backlog, as after a deploy).
	for _, e := range []any{blPlaced{OrderID: "1"}, blNote{OrderID: "1", N: 1}, blNote{OrderID: "1", N: 2}} {
		_, err := store.Append(ctx, "order-1", events.AnyVersion, events.Event{Data: e, Metadata: events.Metadata{CorrelationID: "1"}})
		require.NoError(t, err)
	}
	client, err := converge.NewClient(store, &converge.Config{
		Projections: []*projections.Projection{status},
		Sagas:       []saga.Definition{flow},
		Commands:    []cqrs.CommandHandler{charge},
		Logger:      slog.New(slog.DiscardHandler),
		// Long enough that neither step is parked on a loaded machine: a
		// message queued behind a parked step and run by the parked-step
		// driver is no gate of the processor (GateStats says so).
		GateTimeout: time.Minute,
	})
	require.NoError(t, err)
	require.NoError(t, client.Start(ctx))
	defer func() { _ = client.Stop(ctx) }()

	require.Eventually(t, func() bool {
		tl, err := client.Sagas().Show(ctx, "blflow", "1")
		if err != nil {
			return false
		}
		n := 0
		for _, h := range tl.History {
			if h.Kind == saga.KindStep && h.EventType == "bl.note" {
				n++
			}
		}
		return n == 2
	}, 10*time.Second, 10*time.Millisecond, "both notes ran")

	gs := client.GateStats()
	require.Equal(t, int64(2), gs.Gated, "two events ran steps that read bl_status: two gated steps")
}

package live_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/live"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/projections"
)

type statusChanged struct {
	OrderID string `json:"order_id"`
	Status  string `json:"status"`
}

// TestHub_FedByProjection wires the hub the way applications do, to a
// projection runner's OnUpdate, and checks a WebSocket client receives
// every committed row of its entity, in order, with the row's position.
func TestHub_FedByProjection(t *testing.T) {
	t.Parallel()
	hub, b := setup(t, nil)
	reg := events.NewRegistry()
	events.Register[statusChanged](reg, "test.status_changed")
	st, err := memstore.New(&memstore.Config{Registry: reg})
	require.NoError(t, err)
	defer st.Close()

	p := projections.New("order_status", nil)
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e statusChanged) error {
		return tx.Table("orders").Put(ctx, e.OrderID, e)
	})
	runner, err := projections.NewRunner(&projections.RunnerConfig{
		Source:      st,
		Projections: []*projections.Projection{p},
		OnUpdate: func(u projections.Update) {
			if u.Kind == projections.UpdatePut {
				hub.Publish(u.Key, u.Value, u.Token)
			}
		},
	})
	require.NoError(t, err)
	require.NoError(t, runner.Start(t.Context()))
	defer func() { require.NoError(t, runner.Stop(context.Background())) }()

	conn := b.dial(t, "o-1")
	readType(t, conn, live.TypeSubscribed, "o-1")

	statuses := []string{"placed", "paid", "shipped"}
	var toks []events.Token
	for _, s := range statuses {
		res, err := st.Append(t.Context(), "order-o-1", events.AnyVersion, events.Event{Data: statusChanged{OrderID: "o-1", Status: s}})
		require.NoError(t, err)
		_, err = st.Append(t.Context(), "order-o-2", events.AnyVersion, events.Event{Data: statusChanged{OrderID: "o-2", Status: s}})
		require.NoError(t, err)
		toks = append(toks, res.Token)
	}
	for i, s := range statuses {
		msg := read(t, conn)
		require.Equal(t, live.TypeUpdated, msg.Type)
		require.Equal(t, "o-1", msg.Entity, "o-2's rows go to its own subscribers only")
		var got statusChanged
		require.NoError(t, json.Unmarshal(msg.Data, &got))
		require.Equal(t, s, got.Status)
		require.Equal(t, toks[i].String(), msg.Position)
	}
}

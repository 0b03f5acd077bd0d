package saga_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
)

// TestUndecodableEventIsAnError hands the engine events of a handled type
// whose payload does not decode (random bytes, JSON of the wrong shape, a
// schema version newer than the build's): Handle returns an error
// wrapping events.ErrDecode (not ErrCorrelation: no correlation ran),
// counts it as bad input, and writes nothing, so the runtime's failure
// policy decides what happens to it.
func TestUndecodableEventIsAnError(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		b := newBare(t, mk)
		b.deliver(t, b.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 1}))
		rng := rand.New(rand.NewPCG(3, 5))
		shapes := []string{`5`, `"x"`, `[1,2]`, `true`, `{"order_id":5}`, `{"total":"many"}`, `{"order_id":["1"]}`}
		before := sagaRows(t, b.store, false)
		delivered := 0
		for i := range 40 {
			env := events.Envelope{ID: uuid.NewString(), StreamID: "order-1", Type: "order.placed", SchemaVersion: 1, Version: 2}
			switch i % 3 {
			case 0:
				env.Payload = json.RawMessage(shapes[rng.IntN(len(shapes))])
			case 1:
				p := make([]byte, 1+rng.IntN(40))
				for j := range p {
					p[j] = byte(rng.IntN(256))
				}
				var v OrderPlaced
				if json.Unmarshal(p, &v) == nil {
					continue // garbage that happens to decode
				}
				env.Payload = p
			default:
				env.Payload, env.SchemaVersion = json.RawMessage(`{"order_id":"1"}`), 2+rng.IntN(5)
			}
			delivered++
			err := drive.Unit(context.Background(), b.store, 0, func(ctx context.Context) error { return b.engine.Handle(ctx, env) })
			require.ErrorIs(t, err, events.ErrDecode, "payload %q v%d", env.Payload, env.SchemaVersion)
			require.NotErrorIs(t, err, saga.ErrCorrelation)
			require.Contains(t, err.Error(), env.ID, "the error names the event")
		}
		require.Equal(t, before, sagaRows(t, b.store, false), "nothing was written")
		require.Equal(t, float64(delivered), testutil.ToFloat64(b.engine.Metrics().BadInput.WithLabelValues("decode")), "each undecodable event is counted once")
	})
}

// TestUndecodableEventIsLogged: the engine logs an event it cannot
// decode, naming it, its type and schema version, as it logs one it
// cannot route.
func TestUndecodableEventIsLogged(t *testing.T) {
	t.Parallel()
	var buf logBuffer
	store := newStore(t, nil)
	eng, err := saga.NewEngine(&saga.EngineConfig{
		Store: store, Sagas: []saga.Definition{orderSaga(false)},
		Logger: slog.New(slog.NewJSONHandler(&buf, nil)),
	})
	require.NoError(t, err)
	env := events.Envelope{ID: uuid.NewString(), StreamID: "order-1", Type: "order.placed", SchemaVersion: 1, Version: 1, Payload: json.RawMessage(`{"order_id":5}`)}
	err = drive.Unit(context.Background(), store, 0, func(ctx context.Context) error { return eng.Handle(ctx, env) })
	require.ErrorIs(t, err, events.ErrDecode)
	var line struct {
		Level, Msg    string
		SchemaVersion int `json:"schema_version"`
	}
	require.NoError(t, json.Unmarshal([]byte(buf.String()), &line), buf.String())
	require.Equal(t, "ERROR", line.Level)
	require.Equal(t, "saga: cannot decode event", line.Msg)
	require.Contains(t, buf.String(), `"event_id":"`+env.ID+`"`)
	require.Contains(t, buf.String(), `"type":"order.placed"`)
	require.Equal(t, 1, line.SchemaVersion)
}

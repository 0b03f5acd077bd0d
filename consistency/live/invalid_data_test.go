package live_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/live"
	"github.com/converge-es/converge/events"
)

// invalidJSON returns data that is not one JSON value: empty, blank, a
// valid row cut short, or a valid row with something after it.
func invalidJSON(rng *rand.Rand) json.RawMessage {
	valid := row(rng.IntN(1000))
	switch rng.IntN(4) {
	case 0:
		return json.RawMessage{}
	case 1:
		return json.RawMessage(" \n\t"[:1+rng.IntN(3)])
	case 2:
		return json.RawMessage(valid[:rng.IntN(len(valid))])
	default:
		return json.RawMessage(valid + `,"x"`)
	}
}

// TestHub_InvalidJSONIsNeverSent checks the promise of Publish ("data must
// be valid JSON ... Invalid data is logged and not sent") and of
// Config.Snapshot (invalid data is logged and the client gets an error
// message) over random data that is not JSON, the empty kind included:
// the client never gets an update without its row.
func TestHub_InvalidJSONIsNeverSent(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	for range 20 {
		bad := invalidJSON(rng)
		var logs logBuffer
		hub, b := setup(t, &live.Config{
			Logger: slog.New(slog.NewTextHandler(&logs, nil)),
			Snapshot: func(context.Context, string) (json.RawMessage, events.Token, bool, error) {
				return bad, tok(1), true, nil
			},
		})
		conn := b.dial(t, "order-1")
		readType(t, conn, live.TypeSubscribed, "order-1")
		m := readUTF8(t, conn)
		require.Equal(t, live.TypeError, m.Type, "snapshot data %q sent as %+v", bad, m)

		hub.Publish("order-1", bad, tok(2))
		hub.Publish("order-1", json.RawMessage(row(3)), tok(3))
		m = readUTF8(t, conn)
		require.Equal(t, tok(3).String(), m.Position, "published data %q sent as %+v", bad, m)
		require.JSONEq(t, row(3), string(m.Data))
		require.Contains(t, logs.String(), "not publishing an update", "data %q", bad)
	}
}

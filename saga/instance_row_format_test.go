package saga_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
)

// TestInstanceRowsOfTheEarlierFormatStillRun: instance rows once held
// the state and the compensations' payloads as JSON; they now hold them
// as JSON strings of their text. A row of the earlier format (as
// PostgreSQL's jsonb gives it back, there) still runs: its state decodes,
// its compensations are sent as registered, and the step writes the row
// in the new format.
func TestInstanceRowsOfTheEarlierFormatStillRun(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		fx := newFixture(t, mk, setup{})
		fx.Given(placed("1", 30), ev("1", StockReserved{OrderID: "1"}), ev("1", Ping{OrderID: "1", N: 7}))

		key := orders + "/1"
		row, ok, err := fx.Store().Rows().Get(ctx, "converge.saga", "instances", key, feed.LockNone)
		require.NoError(t, err)
		require.True(t, ok)
		old := earlierFormat(t, row.Value)
		require.NoError(t, fx.Store().Rows().Put(ctx, "converge.saga", "instances", key, old, row.Token))

		fx.When(ev("1", PaymentDeclined{OrderID: "1", Reason: "card expired"}))
		fx.ExpectCommands(ReleaseStock{OrderID: "1"}, NotifyCustomer{OrderID: "1", Text: "order cancelled"})
		in := fx.Instance(orders, "1")
		require.Equal(t, saga.StatusFailed, in.Status)
		require.Equal(t, `{"order_id":"1","total":30,"pings":[7]}`, string(in.State), "the state read from the earlier row")

		row, ok, err = fx.Store().Rows().Get(ctx, "converge.saga", "instances", key, feed.LockNone)
		require.NoError(t, err)
		require.True(t, ok)
		var fields map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(row.Value, &fields))
		var state string
		require.NoError(t, json.Unmarshal(fields["state_text"], &state), "the row is written in the new format")
		require.NotContains(t, fields, "state", "the earlier format's key is gone")
		require.Equal(t, string(in.State), state)
	})
}

// earlierFormat rewrites an instance row as the earlier format held it:
// the state and each compensation's payload as the JSON their strings
// hold, under "state" and "payload". It checks that the row holds them as
// strings, under "state_text" and "payload_text".
func earlierFormat(t *testing.T, value []byte) json.RawMessage {
	t.Helper()
	unquote := func(v json.RawMessage) json.RawMessage {
		var text string
		require.NoError(t, json.Unmarshal(v, &text), "a document held as a string: %s", v)
		return json.RawMessage(text)
	}
	var fields map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(value, &fields))
	fields["state"] = unquote(fields["state_text"])
	delete(fields, "state_text")
	var comps []map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(fields["compensations"], &comps))
	require.Len(t, comps, 2)
	for _, c := range comps {
		c["payload"] = unquote(c["payload_text"])
		delete(c, "payload_text")
	}
	b, err := json.Marshal(comps)
	require.NoError(t, err)
	fields["compensations"] = b
	b, err = json.Marshal(fields)
	require.NoError(t, err)
	return b
}

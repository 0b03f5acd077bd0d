package eventstoretest

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

// testRenamedTypeWithAlias stores events of one type under its old name
// (kept as an alias) and its new one: aggregates must apply both, as the
// same Go type, in stream order.
func testRenamedTypeWithAlias(t *testing.T, s events.Store) {
	ctx := t.Context()
	reg := s.Registry()
	mustAppend(t, s, "counter-1", events.NoStream,
		events.Event{Data: events.Raw{Type: counterIncrementedType, Payload: json.RawMessage(`{"writer":1,"n":1}`)}}, // before the rename
		events.Event{Data: counterBumped{Writer: 1, N: 2}},                                                           // after it
	)
	got, err := s.ReadStream(ctx, "counter-1", 1, 0)
	require.NoError(t, err)
	require.Equal(t, counterIncrementedType, got[0].Type, "stored events keep the name they were stored under")
	require.Equal(t, counterBumpedType, got[1].Type, "new events are stored under the new name")
	for _, env := range got {
		name, ok := reg.CanonicalName(env.Type)
		require.True(t, ok)
		require.Equal(t, counterBumpedType, name, "both names dispatch as the new one")
	}

	var applied []int
	sum := events.Aggregate[int]{Apply: func(n int, ev any) (int, error) {
		c, ok := ev.(counterBumped)
		if !ok {
			return n, fmt.Errorf("unexpected %T", ev)
		}
		applied = append(applied, c.N)
		return n + c.N, nil
	}}
	n, version, err := events.Load(ctx, s, sum, "counter-1")
	require.NoError(t, err)
	require.Equal(t, int64(2), version)
	require.Equal(t, 3, n, "the event stored under the old name is applied too")
	require.Equal(t, []int{1, 2}, applied)

	res, err := events.Update(ctx, s, sum, "counter-1", nil, func(n int) ([]events.Event, error) {
		return []events.Event{{Data: counterBumped{N: n}}}, nil
	})
	require.NoError(t, err)
	require.Equal(t, int64(3), res.LastVersion, "Update decides on the state that includes the old-name event")
	n, _, err = events.Load(ctx, s, sum, "counter-1")
	require.NoError(t, err)
	require.Equal(t, 6, n)
}

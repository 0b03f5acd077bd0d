package projections_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// TestAliasRegisteredBeforeStartIsRead: an alias registered between
// NewRunner and Start reaches the handler. The processor's filter in the
// store was taken at NewRunner, so an event stored under the alias was
// skipped, the checkpoint moving past it and the read model missing it.
func TestAliasRegisteredBeforeStartIsRead(t *testing.T) {
	t.Parallel()
	f := newMemFixture(t)
	r := f.newRunner(t, projections.RunnerConfig{Projections: []*projections.Projection{balances("later", nil)}})
	require.NoError(t, f.store.Registry().Alias("deposit.v0", "deposited"))
	require.NoError(t, r.Start(context.Background()))
	t.Cleanup(func() { stop(t, r) })
	_, err := f.store.Append(context.Background(), "acct-old", events.AnyVersion, events.Event{
		Data: events.Raw{Type: "deposit.v0", Payload: json.RawMessage(`{"account":"old","amount":4}`)},
	})
	require.NoError(t, err)
	res := f.append(t, "acct-old", Deposited{"old", 1})
	f.waitFor(t, res.Token, "later")
	a, ok := account(t, r, "later", "old")
	require.True(t, ok)
	require.Equal(t, Account{Balance: 5, Count: 2}, a, "the event stored under the alias was applied")
}
